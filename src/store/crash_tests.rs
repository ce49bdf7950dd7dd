//! Kill tests: a child process (this test binary, re-executed) runs a seeded workload on a
//! STRICT store and prints each epoch as its commit returns; the parent SIGKILLs it at a
//! random moment, reopens, and compares with an in-memory twin that ran the same workload:
//! the store must equal the twin at the last acknowledged epoch, or at the next one (a commit
//! durable but not yet acknowledged). Nothing else: no lost commit, no uncommitted node.

use super::tests::{reopen, Rng, TempDir};
use super::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "PCORE_CRASH_CHILD_DIR";
const SEED_ENV: &str = "PCORE_CRASH_CHILD_SEED";
const COMMITS_MAX: u64 = 400;
const EPOCH_MARK: &str = "PCORE_ACKED_EPOCH=";

type Snapshot = BTreeMap<NodeId, Vec<u8>>;

fn options() -> StoreOptions {
    StoreOptions {
        durability: Durability::Strict,
        max_class_bytes: 65536,
        checkpoint_log_bytes: 128 << 10, // checkpoints happen during the run, too
        inline_payload_max_bytes: 2048,  // some payloads flushed instead of logged
        verify_checksums: true,          // every read after a kill checks its bytes
        ..StoreOptions::default()
    }
}

/// The workload: allocate, publish (with growth), update in place, free, commit. Calls
/// `after_commit(epoch)` after every commit.
fn workload(store: &Store, seed: u64, commits: u64, mut after_commit: impl FnMut(u64)) {
    let mut rng = Rng::new(seed | 1);
    let mut ids: Vec<NodeId> = Vec::new();
    for _ in 0..commits {
        for _ in 0..1 + rng.below(20) {
            let r = rng.below(10);
            if r < 4 || ids.is_empty() {
                let len = rng.below(5000) as usize;
                let id = store.allocate(len, 1 + rng.below(200) as u8).unwrap().0;
                let mut bytes = vec![0u8; len];
                bytes.iter_mut().for_each(|b| *b = rng.next() as u8);
                ids.push(store.publish(id, &bytes).unwrap());
            } else if r < 7 {
                let i = rng.below(ids.len() as u64) as usize;
                let cap = if rng.below(3) == 0 { 30000 } else { 500 };
                let len = rng.below(cap) as usize;
                let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                ids[i] = store.publish(ids[i], &bytes).unwrap();
            } else if r < 8 {
                let i = rng.below(ids.len() as u64) as usize;
                let b = rng.next() as u8;
                store
                    .update(ids[i], |buf| {
                        buf[0] = b;
                        buf.len().min(64)
                    })
                    .unwrap();
            } else {
                let i = rng.below(ids.len() as u64) as usize;
                store.free(ids.swap_remove(i)).unwrap();
            }
        }
        after_commit(store.commit().unwrap());
    }
}

fn snapshot(store: &Store) -> Snapshot {
    store.live_ids().unwrap().into_iter().map(|id| (id, store.read(id).unwrap())).collect()
}

/// The twin's committed state after `epoch` and after `epoch + 1`.
fn expected_states(seed: u64, epoch: u64) -> (Snapshot, Snapshot) {
    let twin = Store::in_memory(&options()).unwrap();
    let (mut at, mut next) = (Snapshot::new(), Snapshot::new());
    if epoch == 0 {
        at = snapshot(&twin);
    }
    workload(&twin, seed, epoch + 1, |e| {
        if e == epoch {
            at = snapshot(&twin);
        } else if e == epoch + 1 {
            next = snapshot(&twin);
        }
    });
    (at, next)
}

#[test]
fn crash_child_entry_point() {
    // Runs only when re-executed by the kill test; a no-op in a normal test run.
    let (Ok(dir), Ok(seed)) = (std::env::var(CHILD_ENV), std::env::var(SEED_ENV)) else { return };
    let store = Store::open(dir, &options()).unwrap();
    let stdout = std::io::stdout();
    workload(&store, seed.parse().unwrap(), COMMITS_MAX, |epoch| {
        use std::io::Write;
        let mut out = stdout.lock();
        writeln!(out, "\n{EPOCH_MARK}{epoch}").unwrap();
        out.flush().unwrap();
    });
    std::thread::sleep(Duration::from_secs(60)); // wait to be killed
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_commit() {
    let kills: u64 = std::env::var("PCORE_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let mut rng = Rng::new(0xC0FFEE ^ u64::from(std::process::id()));
    let mut mid_run_kills = 0u64;
    for kill in 0..kills {
        let seed = rng.next();
        let dir = TempDir::new("kill");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "store::crash_tests::crash_child_entry_point", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir.path())
            .env(SEED_ENV, seed.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let delay = Duration::from_millis(5 + rng.below(150));
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            let mut last = 0u64;
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                // The harness's own output may share the line: find the marker anywhere.
                if let Some((_, e)) = line.split_once(EPOCH_MARK) {
                    last = e.trim().parse().unwrap();
                }
            }
            last
        });
        let start = Instant::now();
        while start.elapsed() < delay {
            std::thread::sleep(Duration::from_millis(1));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let acknowledged = reader.join().unwrap();
        let context = format!("kill {kill}: seed {seed}, delay {delay:?}, acknowledged epoch {acknowledged}");
        if !dir.path().join("meta").exists() {
            assert_eq!(acknowledged, 0, "{context}");
            continue;
        }
        mid_run_kills += u64::from(acknowledged > 0 && acknowledged < COMMITS_MAX);
        let store = reopen(dir.path(), &options());
        store.verify().unwrap_or_else(|e| panic!("{context}: {e}"));
        let mismatches = store.check_checksums(5).unwrap();
        assert!(mismatches.is_empty(), "{context}: {mismatches:?}");
        let got = snapshot(&store);
        let epoch = store.stats().unwrap().epoch;
        let (at, next) = expected_states(seed, acknowledged);
        let matches = (epoch == acknowledged && got == at) || (epoch == acknowledged + 1 && got == next);
        assert!(
            matches,
            "{context}: store at epoch {epoch} with {} nodes; expected {} (or {} in flight)",
            got.len(),
            at.len(),
            next.len()
        );
        // No live block is handed out again: new nodes leave every committed node intact.
        for i in 0..50u64 {
            let id = store.allocate(64 << (i % 8), 1).unwrap().0;
            store.publish(id, &vec![0xEE; 64 << (i % 8)]).unwrap();
        }
        assert_eq!(
            snapshot(&store).into_iter().filter(|(id, _)| got.contains_key(id)).collect::<Snapshot>(),
            got,
            "{context}"
        );
    }
    eprintln!("{kills} kills, {mid_run_kills} in the middle of the workload");
    assert!(mid_run_kills * 2 >= kills, "only {mid_run_kills} of {kills} kills hit a running workload");
}
