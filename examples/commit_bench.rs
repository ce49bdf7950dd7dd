//! Statement-sized commits (issue 17 item 1): N random 17-byte keys with 8-byte values into a
//! B+ tree, committed every K inserts (STRICT), against the same inserts committed once.
//! Prints the time and the bytes written to disk (this process's write_bytes from
//! /proc/self/io, close included) per row. Not a test: it asserts nothing.
//!
//! cargo run --release --example commit_bench -- [dir] [rows] [every]

use pcore::btree::{BTree, TreeOptions};
use pcore::{Durability, Store, StoreOptions};
use std::time::Instant;

fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn run(dir: &std::path::Path, rows: u64, every: u64) -> (f64, f64, f64) {
    let _ = std::fs::remove_dir_all(dir);
    // PCORE_BENCH_EVENTUAL=1: no sync at commit, to see the commit path's own cost.
    let durability =
        if std::env::var_os("PCORE_BENCH_EVENTUAL").is_some() { Durability::Eventual } else { Durability::Strict };
    let opts = StoreOptions { durability, ..StoreOptions::default() };
    let store = Store::open(dir, &opts).unwrap();
    let tree = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
    store.commit().unwrap();
    let mut rng = pcore::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
    let bytes0 = write_bytes();
    let t0 = Instant::now();
    for i in 0..rows {
        let x = rng.next();
        let mut key = [0u8; 17];
        key[..8].copy_from_slice(&x.to_be_bytes());
        key[8..16].copy_from_slice(&i.to_be_bytes());
        tree.insert(&key, &i.to_le_bytes()).unwrap();
        if (i + 1) % every == 0 {
            store.commit().unwrap();
        }
    }
    store.commit().unwrap();
    let commit_s = t0.elapsed().as_secs_f64();
    let st = store.stats().unwrap();
    let before_close = write_bytes() - bytes0;
    eprintln!(
        "  every {every}: log {:.0} B/row, written before close {:.0} B/row, data files {} KiB, held bases {} KiB",
        st.log_bytes as f64 / rows as f64,
        before_close as f64 / rows as f64,
        st.data_file_bytes >> 10,
        st.held_base_bytes >> 10
    );
    drop(tree);
    if std::env::var_os("PCORE_BENCH_CRASH").is_some() {
        // Reopen as after a kill: the whole log since the checkpoint is replayed.
        store.simulate_crash();
        drop(store);
        let t = Instant::now();
        let store = Store::open(dir, &opts).unwrap();
        eprintln!(
            "  every {every}: reopen after a crash {:.3} s ({:?})",
            t.elapsed().as_secs_f64(),
            store.recovery_note()
        );
        store.close().unwrap();
        return (commit_s, commit_s, 0.0);
    }
    store.close().unwrap();
    let total_s = t0.elapsed().as_secs_f64();
    let per_row = (write_bytes() - bytes0) as f64 / rows as f64;
    (commit_s, total_s, per_row)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "/tmp/pcore-commit-bench".into()));
    let rows: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let every: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(500);
    let (once_s, once_total, once_b) = run(&dir, rows, rows + 1);
    let (each_s, each_total, each_b) = run(&dir, rows, every);
    println!(
        "{rows} rows, one commit:        {:.3} s ({:.3} s with close), {once_b:.0} bytes written per row",
        once_s, once_total
    );
    println!(
        "{rows} rows, a commit every {every}: {:.3} s ({:.3} s with close), {each_b:.0} bytes written per row; {:.2}x one commit",
        each_s,
        each_total,
        each_s / once_s
    );
    let _ = std::fs::remove_dir_all(&dir);
}
