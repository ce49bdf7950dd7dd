//! Brings a class file's next pages in on a thread of its own, ahead of the allocations that
//! will write them (issue 21: allocation at scale).
//!
//! A page of a new segment (preallocated, never written) costs about 0.7-3 µs to bring in
//! for writing, whichever way it is done (a page fault, `MADV_POPULATE_WRITE`, or writing its
//! zeros first): 10-45 ns on each allocation of a 64-byte node if the host's thread pays it.
//! Here one thread for the whole process does it, a window ahead of the host.
//!
//! In a process forked from one that started the thread the thread does not exist: jobs run
//! on the caller's thread there, as they do when the thread could not be started.

use super::PrefaultJob;
use std::sync::mpsc::{channel, Sender};
use std::sync::OnceLock;

struct Worker {
    /// The process that started the thread.
    pid: u32,
    jobs: Sender<PrefaultJob>,
}

static WORKER: OnceLock<Option<Worker>> = OnceLock::new();

/// Runs `job` on the prefault thread (started at the first call), or here when there is none
/// in this process.
pub(crate) fn prefault_later(job: PrefaultJob) {
    // Asked first: a forked child never starts the thread (see `in_forked_child`).
    let worker = if super::in_forked_child() { None } else { WORKER.get_or_init(start).as_ref() };
    match worker.filter(|w| w.pid == std::process::id()) {
        Some(w) => {
            if let Err(unsent) = w.jobs.send(job) {
                unsent.0.run();
            }
        }
        None => job.run(),
    }
}

fn start() -> Option<Worker> {
    let (jobs, queue) = channel::<PrefaultJob>();
    // The thread lives as long as the process: the sender sits in a static, never dropped.
    // It sleeps in `recv` when there is nothing to do.
    let spawned = std::thread::Builder::new().name("pcore-prefault".into()).spawn(move || {
        while let Ok(job) = queue.recv() {
            job.run();
        }
    });
    spawned.ok().map(|_| Worker { pid: std::process::id(), jobs })
}
