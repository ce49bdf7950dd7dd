//! `pcore crash --readers`: while the child commits (and until it is killed), a reader in
//! the parent process opens the store read-only again and again, with checksums verified,
//! and requires that each open reads exactly one commit: the state the model reaches after
//! that many commits, every node and both trees. The writer is another process, so this is
//! the reader table at work: without it the writer reuses blocks the reader reads.

use crate::crash::{open_trees, options, snapshot, Snapshot, Workload, MODES};
use pcore::btree::BTree;
use pcore::{Store, StoreOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
pub(crate) struct ReaderTotals {
    /// Read-only opens that read a commit and matched the model.
    pub opens: u64,
}

impl ReaderTotals {
    pub(crate) fn add(&mut self, other: &ReaderTotals) {
        self.opens += other.opens;
    }
}

/// The workload's states, commit by commit, in memory: asked for epochs that only grow.
struct Model {
    store: Store,
    trees: Vec<BTree>,
    work: Workload,
    epoch: u64,
}

impl Model {
    fn new(seed: u64) -> pcore::Result<Model> {
        let store = Store::in_memory(&StoreOptions::default())?;
        let trees = open_trees(&store)?;
        Ok(Model { store, trees, work: Workload::new(seed), epoch: 0 })
    }

    /// The state after `epoch` commits (`None` if an earlier epoch was asked for before).
    fn at(&mut self, epoch: u64) -> pcore::Result<Option<Snapshot>> {
        if epoch < self.epoch {
            return Ok(None);
        }
        while self.epoch < epoch {
            self.work.step(&self.store, &self.trees)?;
            self.store.commit()?;
            self.epoch += 1;
        }
        snapshot(&self.store).map(Some)
    }
}

pub(crate) struct Reader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<ReaderTotals, String>>,
}

impl Reader {
    /// Starts reading the store the child in `mode` with `seed` writes in `dir`.
    pub(crate) fn start(dir: &Path, mode: usize, seed: u64) -> Reader {
        let stop = Arc::new(AtomicBool::new(false));
        let (dir, flag) = (dir.to_path_buf(), stop.clone());
        let thread = std::thread::spawn(move || read_until_stopped(&dir, mode, seed, &flag));
        Reader { stop, thread }
    }

    /// Stops the reader (once the child is gone) and returns what it did.
    pub(crate) fn stop(self) -> Result<ReaderTotals, String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().map_err(|_| "the reader thread panicked".to_string())?
    }
}

fn read_until_stopped(dir: &PathBuf, mode: usize, seed: u64, stop: &AtomicBool) -> Result<ReaderTotals, String> {
    let mut model = Model::new(seed).map_err(|e| e.to_string())?;
    let mut totals = ReaderTotals::default();
    let opts = StoreOptions { read_only: true, create: false, verify_checksums: true, ..options(MODES[mode]) };
    while !stop.load(Ordering::Relaxed) {
        if !dir.join("meta").exists() {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        }
        let store = Store::open(dir, &opts).map_err(|e| format!("read-only open: {e}"))?;
        let epoch = store.stats().map_err(|e| e.to_string())?.epoch;
        // Before the first commit the trees do not exist yet, and a read-only open cannot make them.
        if epoch > 0 {
            let got = snapshot(&store).map_err(|e| format!("reading epoch {epoch}: {e}"))?;
            match model.at(epoch).map_err(|e| e.to_string())? {
                Some(want) if want != got => {
                    return Err(format!(
                        "a read-only open at epoch {epoch} read {} nodes, not that commit's {}",
                        got.nodes.len(),
                        want.nodes.len()
                    ))
                }
                Some(_) => totals.opens += 1,
                None => return Err(format!("a read-only open went back to epoch {epoch}")),
            }
        }
        store.close().map_err(|e| e.to_string())?;
    }
    Ok(totals)
}
