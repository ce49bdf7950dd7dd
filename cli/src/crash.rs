//! `pcore crash`: the crash matrix. A child process runs a mixed workload (nodes that grow
//! and are freed, two B+ trees with inserts and deletes) and reports every commit as it
//! returns; the parent kills it with SIGKILL at a random moment, reopens the store, and
//! requires: `check` passes, and the store holds exactly the state of the last acknowledged
//! commit (or of the one in flight), nothing less and nothing uncommitted. Every durability
//! mode takes its turn; checkpoints happen during the runs, so kills land in them too.
//! Every fifth kill lands in a child that creates stores one after another (each with one
//! STRICT commit), so kills land in store creation too: each store it started must then be
//! whole, or absent (a read-only open finds none and a writable open creates one), never
//! refused.

use crate::Outcome;
use pcore::btree::{BTree, Duplicates, TreeOptions};
use pcore::{Durability, NodeId, Store, StoreOptions};
use std::io::{BufRead, BufReader, Write};
use std::ops::Bound;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) const COMMITS_MAX: u64 = 400;
const KIND_NODE: u8 = 1;
pub(crate) const MODES: [Durability; 3] = [Durability::Strict, Durability::Balanced, Durability::Eventual];

pub(crate) fn options(mode: Durability) -> StoreOptions {
    StoreOptions {
        durability: mode,
        checkpoint_log_bytes: 96 << 10, // checkpoints during the run, so kills hit them too
        inline_payload_max_bytes: 2048, // larger payloads are flushed, not logged
        verify_checksums: true,
        ..StoreOptions::default()
    }
}

fn tree_options() -> [(&'static [u8], TreeOptions); 2] {
    [
        (b"unique", TreeOptions::default()),
        (b"multi", TreeOptions { page_bytes: 512, duplicates: Duplicates::Multi, ..TreeOptions::default() }),
    ]
}

pub(crate) use pcore::test_rng::TestRng as Rng;

/// Up to `max_len` bytes from a four-letter alphabet: keys that collide and share prefixes.
fn random_bytes(rng: &mut Rng, max_len: u64) -> Vec<u8> {
    (0..rng.below(max_len + 1)).map(|_| rng.below(4) as u8 + b'a').collect()
}

/// The workload, step by step: the same seed gives the same operations on any store.
pub(crate) struct Workload {
    rng: Rng,
    nodes: Vec<(NodeId, Vec<u8>)>,
    serial: u64,
}

impl Workload {
    pub(crate) fn new(seed: u64) -> Workload {
        Workload { rng: Rng::from_seed(seed), nodes: Vec::new(), serial: 0 }
    }

    fn node_bytes(&mut self) -> Vec<u8> {
        self.serial += 1;
        let mut b = self.serial.to_le_bytes().to_vec(); // unique, so states compare as sets
        let len = [16, 200, 1500, 5000, 20000][self.rng.below(5) as usize];
        b.extend((0..self.rng.below(len)).map(|i| (i ^ self.serial) as u8));
        b
    }

    /// One commit's worth of changes: now and then a bulk of new nodes (over a MiB, which a
    /// STRICT commit syncs in their blocks rather than logs), else a few node and tree edits.
    pub(crate) fn step(&mut self, store: &Store, trees: &[BTree]) -> pcore::Result<()> {
        if self.rng.below(40) == 0 {
            for _ in 0..300 {
                self.serial += 1;
                let mut bytes = self.serial.to_le_bytes().to_vec();
                bytes.extend((0..4000u64).map(|i| (i.wrapping_mul(self.serial) >> 3) as u8));
                let id = store.allocate(bytes.len(), KIND_NODE)?.0;
                store.publish(id, &bytes)?;
                self.nodes.push((id, bytes));
            }
        }
        for _ in 0..6 {
            match self.rng.below(3) {
                0 if !self.nodes.is_empty() => {
                    let i = self.rng.below(self.nodes.len() as u64) as usize;
                    store.free(self.nodes.swap_remove(i).0)?;
                }
                1 if !self.nodes.is_empty() => {
                    let i = self.rng.below(self.nodes.len() as u64) as usize;
                    let bytes = self.node_bytes(); // often larger: the node moves, its id stays
                    store.publish(self.nodes[i].0, &bytes)?;
                    self.nodes[i].1 = bytes;
                }
                _ => {
                    let bytes = self.node_bytes();
                    let id = store.allocate(bytes.len(), KIND_NODE)?.0;
                    store.publish(id, &bytes)?;
                    self.nodes.push((id, bytes));
                }
            }
        }
        for (t, max_value) in trees.iter().zip([300u64, 24]) {
            for _ in 0..25 {
                let key = random_bytes(&mut self.rng, 40);
                if self.rng.below(3) == 0 {
                    t.remove(&key)?;
                } else {
                    let value = random_bytes(&mut self.rng, max_value);
                    match t.insert(&key, &value) {
                        Ok(()) | Err(pcore::Error::DuplicateKey(_)) => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn open_trees(store: &Store) -> pcore::Result<Vec<BTree>> {
    tree_options().iter().map(|(name, o)| BTree::open(store, name, o)).collect()
}

/// The child mode that creates stores (`CREATION_MODE`), and how many at most.
pub const CREATION_MODE: usize = MODES.len();
pub(crate) const CREATIONS_MAX: u64 = 2000;

fn creation_dir(dir: &Path, i: u64) -> std::path::PathBuf {
    dir.join(format!("store-{i}"))
}

/// The creation child: store after store, each with one node committed STRICT, printing the
/// store's number once its commit returned; each then left as a crash leaves it.
fn creation_child(dir: &Path) -> Result<Outcome, String> {
    let e = |e: pcore::Error| e.to_string();
    let mut out = std::io::stdout().lock();
    for i in 0..CREATIONS_MAX {
        let store = Store::open(creation_dir(dir, i), &options(Durability::Strict)).map_err(e)?;
        let id = store.allocate(8, KIND_NODE).map_err(e)?.0;
        store.publish(id, &i.to_le_bytes()).map_err(e)?;
        store.commit().map_err(e)?;
        writeln!(out, "{}", i + 1).and_then(|_| out.flush()).map_err(|e| e.to_string())?;
        store.simulate_crash();
    }
    Ok(Outcome::Done)
}

/// After a kill of the creation child: every store whose commit was acknowledged holds its
/// node; the one in flight holds it, or is empty, or is absent and creatable. Returns whether
/// the kill cut a creation short (no meta file yet).
pub(crate) fn verify_creations(dir: &Path, acknowledged: u64) -> Result<bool, String> {
    let mut cut_short = false;
    for i in 0..=acknowledged {
        let d = creation_dir(dir, i);
        if !d.exists() {
            if i < acknowledged {
                return Err(format!("store {i} was acknowledged but its directory is gone"));
            }
            continue;
        }
        let created = d.join("meta").exists();
        let read_only = StoreOptions { read_only: true, ..options(Durability::Strict) };
        match Store::open(&d, &read_only) {
            Err(pcore::Error::NotFound(_)) if !created && i == acknowledged => cut_short = true,
            Err(e) => return Err(format!("store {i}: a read-only open answered {e}")),
            Ok(s) => s.close().map_err(|e| e.to_string())?,
        }
        let store = open_retrying(&d, &options(Durability::Strict)).map_err(|e| format!("store {i}: {e}"))?;
        let ids = store.live_ids().map_err(|e| e.to_string())?;
        let holds_its_node = ids.len() == 1 && store.read(ids[0]).map_err(|e| e.to_string())? == i.to_le_bytes();
        if !(holds_its_node || (ids.is_empty() && i == acknowledged)) {
            return Err(format!("store {i} holds {} nodes, not its one committed node", ids.len()));
        }
        store.close().map_err(|e| e.to_string())?;
    }
    Ok(cut_short)
}

/// The child: runs the workload in `dir`, printing each commit's epoch once it returned.
pub fn child(dir: &Path, mode: usize, seed: u64) -> Result<Outcome, String> {
    if mode == CREATION_MODE {
        return creation_child(dir);
    }
    let e = |e: pcore::Error| e.to_string();
    let store = Store::open(dir, &options(MODES[mode % MODES.len()])).map_err(e)?;
    let trees = open_trees(&store).map_err(e)?;
    let mut w = Workload::new(seed);
    let mut out = std::io::stdout().lock();
    for _ in 0..COMMITS_MAX {
        w.step(&store, &trees).map_err(e)?;
        let epoch = store.commit().map_err(e)?;
        // The commit, and the newest one known to be on disk: a power cut must keep that one.
        writeln!(out, "{epoch} {}", store.durable_epoch()).and_then(|_| out.flush()).map_err(|e| e.to_string())?;
    }
    Ok(Outcome::Done)
}

/// What a store holds, independent of node ids: our nodes' payloads, and both trees.
#[derive(PartialEq, Eq, Debug)]
pub(crate) struct Snapshot {
    pub nodes: Vec<Vec<u8>>,
    pub trees: Vec<Vec<(Vec<u8>, Vec<u8>)>>,
}

pub(crate) fn snapshot(store: &Store) -> pcore::Result<Snapshot> {
    let mut nodes = Vec::new();
    for id in store.live_ids()? {
        if store.info(id)?.kind == KIND_NODE {
            nodes.push(store.read(id)?);
        }
    }
    nodes.sort();
    let trees =
        open_trees(store)?.iter().map(|t| t.range(Bound::Unbounded, Bound::Unbounded)).collect::<pcore::Result<_>>()?;
    Ok(Snapshot { nodes, trees })
}

/// The committed state after `commits` commits, computed in memory.
fn expected(seed: u64, commits: u64) -> pcore::Result<Snapshot> {
    let store = Store::in_memory(&StoreOptions::default())?;
    let trees = open_trees(&store)?;
    let mut w = Workload::new(seed);
    for _ in 0..commits {
        w.step(&store, &trees)?;
        store.commit()?;
    }
    snapshot(&store)
}

#[derive(Default)]
struct Totals {
    readers: crate::crash_readers::ReaderTotals,
    kills: u64,
    mid_run: u64,
    commits_acknowledged: u64,
    in_flight_landed: u64,
    checkpoints_seen: u64,
    creation_kills: u64,
    creations_cut_short: u64,
    stores_created: u64,
}

pub fn run(kills: u64, seed: u64, dir: Option<&Path>, readers: bool) -> Result<Outcome, String> {
    let work = crate::util::WorkDir::new(dir, "crash", false)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rng = Rng::from_seed(seed);
    let mut t = Totals::default();
    let started = Instant::now();
    println!("pcore crash: {kills} SIGKILLs of a child running nodes + two B+ trees, every durability mode");
    let bar = crate::util::progress(kills, "kills");
    for kill in 0..kills {
        bar.set_position(kill);
        let dir = work.path.join(format!("run-{kill}"));
        if kill % 5 == 4 {
            let delay = 5 + rng.below(80);
            let context = format!("kill {kill} (store creation, after {delay} ms)");
            let acks = run_child_until_killed(&exe, &dir, CREATION_MODE, 0, delay, CREATIONS_MAX)
                .map_err(|e| format!("{context}: {e}"))?;
            let created = last_acknowledged(&acks);
            t.kills += 1;
            t.creation_kills += 1;
            t.stores_created += created;
            t.creations_cut_short += u64::from(verify_creations(&dir, created).map_err(|e| format!("{context}: {e}"))?);
            remove_run_dir(&dir).map_err(|e| format!("{context}: {e}"))?;
            continue;
        }
        let (mode, child_seed, delay) = (kill as usize % MODES.len(), rng.below(u64::MAX), 5 + rng.below(400));
        let context = format!("kill {kill} ({:?}, seed {child_seed}, after {delay} ms)", MODES[mode]);
        let beside = readers.then(|| crate::crash_readers::Reader::start(&dir, mode, child_seed));
        let acks = run_child_until_killed(&exe, &dir, mode, child_seed, delay, COMMITS_MAX)
            .map_err(|e| format!("{context}: {e}"))?;
        if let Some(reader) = beside {
            t.readers.add(&reader.stop().map_err(|e| format!("{context}: a reader beside the writer: {e}"))?);
        }
        let acknowledged = last_acknowledged(&acks);
        t.kills += 1;
        t.commits_acknowledged += acknowledged;
        t.mid_run += u64::from(acknowledged > 0 && acknowledged < COMMITS_MAX);
        if !dir.join("meta").exists() {
            if acknowledged != 0 {
                return Err(format!("{context}: {acknowledged} commits acknowledged but no store on disk"));
            }
            continue;
        }
        t.checkpoints_seen += log_generation(&dir) - 1; // each checkpoint starts a new log
        let epoch = verify_recovered(&dir, mode, child_seed, acknowledged..=acknowledged + 1)
            .map_err(|e| format!("{context}: {e}"))?;
        t.in_flight_landed += u64::from(epoch > acknowledged);
        let problems = crate::check::problems(&dir);
        if !problems.is_empty() {
            return Err(format!("{context}: check after recovery: {}", problems.join("; ")));
        }
        remove_run_dir(&dir).map_err(|e| format!("{context}: {e}"))?;
    }
    bar.finish_and_clear();
    println!("  kills                      {}", t.kills);
    println!("  killed mid-run             {} (after at least one commit, before the last)", t.mid_run);
    println!("  commits acknowledged       {} (every one found after its kill)", t.commits_acknowledged);
    println!(
        "  in-flight commits landed   {} (killed after the commit, before it was acknowledged)",
        t.in_flight_landed
    );
    println!("  checkpoints in the runs    {}", t.checkpoints_seen);
    println!(
        "  kills of store creation    {} ({} stores created, {} creations cut short before the store existed)",
        t.creation_kills, t.stores_created, t.creations_cut_short
    );
    if readers {
        println!(
            "  read-only opens beside it  {} (each read one commit whole: the model's state at its epoch, \
             checksums verified)",
            t.readers.opens
        );
    }
    println!("  time                       {:.1} s", started.elapsed().as_secs_f64());
    println!("nothing lost: after every kill, check passed and the store held exactly its last acknowledged commit;");
    println!("every store whose creation was killed opened whole, or was absent and created anew");
    Ok(Outcome::Done)
}

/// Removes a run's directory once it is verified. A child killed before it made the
/// directory (a creation kill after 5 ms on a busy machine) leaves none: that is not a
/// failure (the harness used to stop there with a bare "No such file or directory").
fn remove_run_dir(dir: &Path) -> Result<(), String> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(format!("remove {}: {e}", dir.display())),
        _ => Ok(()),
    }
}

/// The newest log file's generation (1 in a store never checkpointed).
fn log_generation(dir: &Path) -> u64 {
    let generation = |name: &str| name.strip_prefix("wal-")?.strip_suffix(".log")?.parse::<u64>().ok();
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(generation))
        .max()
        .unwrap_or(1)
}

/// What a child acknowledged, line by line: a commit's epoch (or a count of stores), and the
/// newest commit the store then knew to be on disk (the same count, for stores).
#[derive(Clone, Copy)]
pub(crate) struct Ack {
    pub done: u64,
    pub durable: u64,
}

pub(crate) type Acks = Vec<Ack>;

pub(crate) fn last_acknowledged(acks: &Acks) -> u64 {
    acks.last().map_or(0, |a| a.done)
}

fn parse_ack(line: &str) -> Option<Ack> {
    let mut words = line.split_whitespace().map(str::parse::<u64>);
    let done = words.next()?.ok()?;
    let durable = match words.next() {
        Some(d) => d.ok()?,
        None => done,
    };
    Some(Ack { done, durable })
}

/// Starts the child, kills it after `delay_ms`, and returns what it acknowledged; `last` is
/// the number it ends on when never killed.
pub(crate) fn run_child_until_killed(
    exe: &Path,
    dir: &Path,
    mode: usize,
    seed: u64,
    delay_ms: u64,
    last: u64,
) -> Result<Acks, String> {
    let mut child = Command::new(exe)
        .args(["crash", "--child-mode", &mode.to_string(), "--seed", &seed.to_string(), "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("start the child: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        BufReader::new(stdout).lines().map_while(Result::ok).filter_map(|l| parse_ack(&l)).collect::<Acks>()
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    // SIGKILL: no destructor, no flush, no checkpoint runs in the child.
    let _ = child.kill();
    let status = child.wait().map_err(|e| e.to_string())?;
    let acks = reader.join().map_err(|_| "the reader thread panicked".to_string())?;
    if status.success() && last_acknowledged(&acks) != last {
        return Err(format!("the child ended on its own after {} commits", last_acknowledged(&acks)));
    }
    Ok(acks)
}

/// Reopens a store after a crash and compares it with the model: every check passes, and it
/// holds exactly the state after some commit in `epochs`. Returns that commit's epoch.
pub(crate) fn verify_recovered(
    dir: &Path,
    mode: usize,
    seed: u64,
    epochs: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    let store = open_retrying(dir, &options(MODES[mode]))?;
    store.verify().map_err(|e| format!("verify: {e}"))?;
    let mismatches = store.check_checksums(5).map_err(|e| e.to_string())?;
    if !mismatches.is_empty() {
        return Err(format!("payload checksums: {mismatches:?}"));
    }
    for t in open_trees(&store).map_err(|e| e.to_string())? {
        t.verify().map_err(|e| format!("tree verify: {e}"))?;
    }
    let epoch = store.stats().map_err(|e| e.to_string())?.epoch;
    if !epochs.contains(&epoch) {
        return Err(format!("store at epoch {epoch}, expected one of {epochs:?}"));
    }
    let got = snapshot(&store).map_err(|e| format!("read back: {e}"))?;
    store.close().map_err(|e| e.to_string())?;
    let want = expected(seed, epoch).map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!(
            "store at epoch {epoch} with {} nodes does not hold that commit's state ({} nodes)",
            got.nodes.len(),
            want.nodes.len()
        ));
    }
    Ok(epoch)
}

/// The killed child's lock is gone with it; a sibling process between fork and exec may
/// still hold a copy of the descriptor for a moment.
pub(crate) fn open_retrying(dir: &Path, opts: &StoreOptions) -> Result<Store, String> {
    let start = Instant::now();
    loop {
        match Store::open(dir, opts) {
            Err(pcore::Error::Busy(_)) if start.elapsed() < Duration::from_secs(5) => {
                std::thread::sleep(Duration::from_millis(5))
            }
            other => return other.map_err(|e| format!("reopen: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_whose_child_never_made_its_directory_is_removed_without_an_error() {
        let dir = std::env::temp_dir().join(format!("pcore-crash-never-made-{}", std::process::id()));
        assert!(!dir.exists());
        assert_eq!(remove_run_dir(&dir), Ok(()));
        std::fs::create_dir_all(dir.join("store-0")).unwrap();
        assert_eq!(remove_run_dir(&dir), Ok(()));
        assert!(!dir.exists());
    }
}
