//! Issue 17 item 5: the CPU of a one-node STRICT commit. Opens a store in `dir`, rewrites one
//! 64-byte node and commits it `n` times (after `warm` commits and a reopen, as the bench's
//! "reopened" row does; `checkpoint` as a fourth argument checkpoints before the measured
//! commits, as its "after a checkpoint" row does). Run it under callgrind on /dev/shm twice with
//! different `n`: the difference over the difference in `n` is the instructions per commit.
//!
//! cargo run --release --example strict_commit_probe -- [dir] [n] [warm] [checkpoint]

use pcore::{Durability, Store, StoreOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "/dev/shm/pcore-probe".into()));
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let warm: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let checkpoint = args.get(4).is_some_and(|a| a == "checkpoint");
    let _ = std::fs::remove_dir_all(&dir);
    let opts = StoreOptions { durability: Durability::Strict, ..StoreOptions::default() };
    let store = Store::open(&dir, &opts).unwrap();
    let id = store.allocate(64, 1).unwrap().0;
    for i in 0..warm {
        store.publish(id, &[i as u8; 64]).unwrap();
        store.commit().unwrap();
    }
    store.close().unwrap();
    let store = Store::open(&dir, &opts).unwrap();
    if checkpoint {
        store.checkpoint().unwrap();
    }
    let t = std::time::Instant::now();
    for i in 0..n {
        store.publish(id, &[i as u8; 64]).unwrap();
        store.commit().unwrap();
    }
    let us = t.elapsed().as_secs_f64() * 1e6 / n.max(1) as f64;
    store.close().unwrap();
    eprintln!("{n} commits, {us:.2} us each");
}
