//! Torn and damaged files: every kind of store file truncated at its record boundaries and at
//! random offsets, and hit by random bit flips. Opening must recover to a committed state (and
//! say so) or fail with `Corrupt` naming the file; a read of a damaged node must be `Corrupt`,
//! never wrong bytes; nothing may panic.

use super::tests::{reopen, TempDir};
use super::*;
use crate::error::Error;
use crate::test_rng::TestRng as Rng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

type State = BTreeMap<NodeId, Vec<u8>>;

fn options() -> StoreOptions {
    StoreOptions {
        durability: Durability::Strict,
        inline_payload_max_bytes: 2048, // some payloads live only in the class files
        checkpoint_log_bytes: 1 << 30,  // no checkpoint but the one at close
        verify_checksums: true,
        // No synced length recorded, so every cut is judged as a crash's torn tail would be
        // (a cut below a recorded length is edge_tests' case).
        meta_refresh_ms: u32::MAX,
        ..StoreOptions::default()
    }
}

fn payload(seed: u64, len: usize) -> Vec<u8> {
    (0..len).map(|i| (seed.wrapping_mul(131).wrapping_add(i as u64 * 17) % 253) as u8).collect()
}

/// A store with a checkpoint (after `before` commits and a close) and `after` more commits in
/// the log (the writer then killed). Returns the committed state after every commit, the
/// first being the empty store.
fn build(dir: &Path, before: usize, after: usize) -> Vec<State> {
    build_with(dir, before, after, &options())
}

/// [`build`] with other options.
fn build_with(dir: &Path, before: usize, after: usize, opts: &StoreOptions) -> Vec<State> {
    let mut rng = Rng::new(0x5EED_0FDA_3A6E);
    let mut states = vec![State::new()];
    let mut s = reopen(dir, opts);
    for c in 0..before + after {
        if c == before {
            s.close().unwrap();
            s = reopen(dir, opts);
        }
        let mut state = states.last().unwrap().clone();
        for op in 0..12u64 {
            let ids: Vec<NodeId> = state.keys().copied().collect();
            match rng.below(4) {
                0 if !ids.is_empty() => {
                    let id = ids[rng.below(ids.len() as u64) as usize];
                    s.free(id).unwrap();
                    state.remove(&id);
                }
                1 if !ids.is_empty() => {
                    let id = ids[rng.below(ids.len() as u64) as usize];
                    let bytes = payload(c as u64 * 100 + op, 1 + rng.below(6000) as usize); // may grow
                    assert_eq!(s.publish(id, &bytes).unwrap(), id);
                    state.insert(id, bytes);
                }
                _ => {
                    let bytes = payload(c as u64 * 100 + op, 1 + rng.below(3000) as usize);
                    let id = s.allocate(bytes.len(), 1).unwrap().0;
                    s.publish(id, &bytes).unwrap();
                    state.insert(id, bytes);
                }
            }
        }
        s.commit().unwrap();
        states.push(state);
    }
    s.simulate_crash();
    states
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn store_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap();
            name != "LOCK" && name != super::readers::READERS_FILE && name != super::reserve::RESERVE_FILE
        })
        .collect();
    files.sort();
    files
}

/// How one damaged copy of the store opened.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    /// Opened at committed state `index`; `damaged_reads` nodes read as `Corrupt`.
    Recovered {
        index: usize,
        damaged_reads: usize,
    },
    Refused,
}

/// Opens the damaged copy (read-only, then as a writer) and checks what it answers.
fn open_damaged(dir: &Path, states: &[State], case: &str) -> Outcome {
    for read_only in [true, false] {
        let opts = StoreOptions { read_only, create: false, ..options() };
        let result = std::panic::catch_unwind(|| Store::open(dir, &opts));
        let opened = result.unwrap_or_else(|_| panic!("{case}: open panicked"));
        let store = match opened {
            Err(Error::Corrupt { file, .. }) => {
                assert!(
                    ["meta", "wal-", "checkpoint-", "class-"].iter().any(|p| file.starts_with(p)),
                    "{case}: Corrupt names {file:?}, not a store file"
                );
                return Outcome::Refused;
            }
            Err(e) => panic!("{case}: open failed with {e}, not Corrupt"),
            Ok(s) => s,
        };
        let ids = store.live_ids().unwrap();
        let index = states
            .iter()
            .rposition(|st| st.len() == ids.len() && ids.iter().all(|id| st.contains_key(id)))
            .unwrap_or_else(|| panic!("{case}: {} live nodes match no committed state", ids.len()));
        let mut damaged_reads = 0;
        for id in &ids {
            match store.read(*id) {
                Ok(bytes) => assert_eq!(bytes, states[index][id], "{case}: node {id} read wrong bytes"),
                Err(Error::Corrupt { .. }) => damaged_reads += 1,
                Err(e) => panic!("{case}: read of {id}: {e}"),
            }
        }
        if read_only {
            drop(store);
            continue;
        }
        store.close().ok();
        return Outcome::Recovered { index, damaged_reads };
    }
    unreachable!()
}

fn truncate(path: &Path, len: u64) {
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len).unwrap();
}

fn flip_bit(path: &Path, bit: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[(bit / 8) as usize] ^= 1 << (bit % 8);
    std::fs::write(path, b).unwrap();
}

#[test]
fn a_log_cut_at_each_frame_boundary_recovers_exactly_the_commits_before_it() {
    let pristine = TempDir::new("damage-log-cuts");
    let states = build(pristine.path(), 6, 10);
    let log = store_files(pristine.path()).into_iter().find(|p| p.to_string_lossy().contains("wal-")).unwrap();
    let ends = wal::frame_ends(&std::fs::read(&log).unwrap());
    assert_eq!(ends.len(), 10, "ten commits after the checkpoint");
    let work = TempDir::new("damage-log-cuts-work");
    for (k, &end) in std::iter::once(&0).chain(&ends).enumerate() {
        for cut in [end, end + 1, end + 23] {
            copy_dir(pristine.path(), work.path());
            let wlog = work.path().join(log.file_name().unwrap());
            if cut > std::fs::metadata(&wlog).unwrap().len() {
                continue;
            }
            truncate(&wlog, cut);
            let case = format!("log cut at {cut} (after frame {k})");
            let Outcome::Recovered { index, damaged_reads } = open_damaged(work.path(), &states, &case) else {
                panic!("{case}: refused; a log cut at a frame is a valid, shorter log")
            };
            assert_eq!(index, 6 + k, "{case}: the commits before the cut, and none after");
            // Commits cut off may have reused blocks of older versions (their frees were
            // durable): those nodes now read as Corrupt, never as the newer bytes.
            if k == ends.len() {
                assert_eq!(damaged_reads, 0, "{case}: nothing was lost");
            }
        }
    }
}

/// The committed state `ids` are, or a panic naming `case`.
fn state_index(states: &[State], ids: &[NodeId], case: &str) -> usize {
    states
        .iter()
        .rposition(|st| st.len() == ids.len() && ids.iter().all(|id| st.contains_key(id)))
        .unwrap_or_else(|| panic!("{case}: {} live nodes match no committed state", ids.len()))
}

/// An outside tester's report: after a kill of an EVENTUAL writer on a nearly full disk, the
/// reopened writer saw a node of the commit in flight that a later read-only open did not.
/// Whatever a writer's open keeps of a cut log, with any room left on the disk (its checkpoint
/// at open, or at close, may fail), every later open answers the same.
#[test]
fn after_a_kill_the_reopened_writer_and_every_later_open_agree() {
    let opts = StoreOptions { durability: Durability::Eventual, ..options() };
    let pristine = TempDir::new("agree-pristine");
    let states = build_with(pristine.path(), 3, 6, &opts);
    let log = store_files(pristine.path()).into_iter().find(|p| p.to_string_lossy().contains("wal-")).unwrap();
    let bytes = std::fs::read(&log).unwrap();
    let mut cuts: Vec<u64> = wal::frame_ends(&bytes).into_iter().flat_map(|e| [e - 1, e, e + 1]).collect();
    cuts.retain(|&c| c <= bytes.len() as u64);
    let work = TempDir::new("agree-work");
    for cut in cuts {
        // Room for none, part, or all of the checkpoint at open (about 10 KiB here).
        for room in [0u64, 4, 8, 12, 16, 64].map(|k| Some(k << 10)).into_iter().chain([None]) {
            copy_dir(pristine.path(), work.path());
            truncate(&work.path().join(log.file_name().unwrap()), cut);
            let case = format!("log cut at {cut}, {room:?} bytes of room");
            let used: u64 = store_files(work.path()).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
            simulate_disk_limit(work.path(), room.map(|r| used + r));
            let mut seen = Vec::new();
            match Store::open(work.path(), &StoreOptions { create: false, ..opts.clone() }) {
                Ok(w) => {
                    seen.push(("writer", state_index(&states, &w.live_ids().unwrap(), &case)));
                    let _ = w.close(); // NoSpace on a full disk: the commit stays in the log
                }
                Err(Error::NoSpace(_)) => {}
                Err(e) => panic!("{case}: writable open: {e}"),
            }
            let r = Store::open(work.path(), &StoreOptions { read_only: true, create: false, ..opts.clone() }).unwrap();
            seen.push(("read-only", state_index(&states, &r.live_ids().unwrap(), &case)));
            drop(r);
            simulate_disk_limit(work.path(), None);
            let w = Store::open(work.path(), &StoreOptions { create: false, ..opts.clone() }).unwrap();
            seen.push(("writer again", state_index(&states, &w.live_ids().unwrap(), &case)));
            w.close().unwrap();
            assert!(seen.iter().all(|&(_, i)| i == seen[0].1), "{case}: the opens disagree: {seen:?}");
        }
    }
}

#[test]
fn a_torn_tail_is_reported_by_the_open_that_finds_it() {
    let dir = TempDir::new("damage-note");
    build(dir.path(), 2, 3);
    let log = store_files(dir.path()).into_iter().find(|p| p.to_string_lossy().contains("wal-")).unwrap();
    let len = wal::cut_to_frames(&log).len() as u64;
    truncate(&log, len - 5);
    let s = reopen(dir.path(), &StoreOptions { read_only: true, ..options() });
    let note = s.recovery_note().expect("recovery says what it did");
    assert!(note.contains("2 commits replayed") && note.contains("dropped"), "{note}");
}

/// Truncations at random offsets and random bit flips, in every file of the store.
#[test]
fn random_truncations_and_bit_flips_in_every_file_never_return_wrong_bytes() {
    let pristine = TempDir::new("damage-random");
    let states = build(pristine.path(), 5, 5);
    let work = TempDir::new("damage-random-work");
    let mut rng = Rng::new(0x00DA_4A6E);
    let (mut refused, mut recovered, mut caught_reads) = (0, 0, 0);
    for file in store_files(pristine.path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let len = std::fs::metadata(&file).unwrap().len();
        let data = std::fs::read(&file).unwrap();
        // Flip bits where bytes are in use (a flip in a never-written zero region changes nothing).
        let used: Vec<u64> = (0..len).filter(|&i| data[i as usize] != 0).collect();
        for round in 0..30 {
            copy_dir(pristine.path(), work.path());
            let target = work.path().join(&name);
            let case = if round < 10 {
                let cut = rng.below(len);
                truncate(&target, cut);
                format!("{name} cut at {cut}")
            } else {
                let at = used[rng.below(used.len() as u64) as usize];
                let bit = at * 8 + rng.below(8);
                flip_bit(&target, bit);
                format!("{name} bit {bit} flipped")
            };
            match open_damaged(work.path(), &states, &case) {
                Outcome::Refused => refused += 1,
                Outcome::Recovered { damaged_reads, .. } => {
                    recovered += 1;
                    caught_reads += damaged_reads;
                }
            }
        }
    }
    eprintln!("damaged copies: {refused} refused as Corrupt, {recovered} recovered, {caught_reads} damaged nodes caught by their checksums");
    assert!(refused > 0 && recovered > 0 && caught_reads > 0, "{refused} {recovered} {caught_reads}");
}

/// The record boundaries of a store file, by its kind: meta slots, checkpoint header and
/// chunks, log frames, class-file blocks (the first few of each segment, and every segment).
fn record_boundaries(path: &Path) -> Vec<u64> {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let data = std::fs::read(path).unwrap();
    let len = data.len() as u64;
    let mut cuts: Vec<u64> = if name == "meta" {
        vec![0, 52, 4096, 4096 + 52]
    } else if name.starts_with("checkpoint-") {
        let mut cuts = checkpoint::chunk_ends(&data);
        // Inside the header, and every few bytes into the first chunk's entries.
        cuts.extend([0, 8, 40]);
        cuts.extend((0..24).map(|k| checkpoint::HEADER_BYTES as u64 + 8 + k * 5));
        cuts
    } else if name.starts_with("wal-") {
        std::iter::once(0).chain(wal::frame_ends(&data)).collect()
    } else {
        let block: u64 = name.rsplit('-').next().unwrap().trim_end_matches(".seg").parse().unwrap();
        let segment = crate::limits::SEGMENT_BYTES_MIN.max(crate::limits::SEGMENT_BLOCKS_MIN * block);
        // A segment cut inside (the store gave its free tail back) ends the file: cuts at its
        // blocks too, up to its end.
        let tail = (len % segment).div_ceil(block);
        (0..len.div_ceil(segment))
            .flat_map(|s| (0..4).map(move |b| s * segment + b * block))
            .chain((1..=tail.min(4)).map(|b| len - b * block))
            .collect()
    };
    cuts.push(len);
    cuts.retain(|&c| c <= len);
    cuts.sort_unstable();
    cuts.dedup();
    cuts
}

#[test]
fn every_file_cut_at_each_record_boundary_recovers_or_is_corrupt() {
    let pristine = TempDir::new("damage-boundaries");
    let states = build(pristine.path(), 4, 4);
    let work = TempDir::new("damage-boundaries-work");
    let mut cases = 0;
    let partial = store_files(pristine.path()).into_iter().any(|f| {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        name.ends_with(".seg") && std::fs::metadata(&f).unwrap().len() % crate::limits::SEGMENT_BYTES_MIN != 0
    });
    assert!(partial, "a class file ends inside a segment: cuts there are covered");
    for file in store_files(pristine.path()) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        for cut in record_boundaries(&file) {
            copy_dir(pristine.path(), work.path());
            truncate(&work.path().join(&name), cut);
            let outcome = open_damaged(work.path(), &states, &format!("{name} cut at {cut}"));
            if cut == std::fs::metadata(&file).unwrap().len() {
                assert!(matches!(outcome, Outcome::Recovered { index: 8, damaged_reads: 0 }), "{name}: {outcome:?}");
            }
            cases += 1;
        }
    }
    assert!(cases > 50, "{cases} cuts");
}
