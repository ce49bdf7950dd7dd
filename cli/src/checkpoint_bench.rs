//! `pcore bench`'s checkpoint-at-scale row (issue 21 item 1): the time of a checkpoint after
//! the same number of changes in stores of growing size. An incremental checkpoint costs what
//! changed, so the times should stay within 1.5x of each other across the sizes.

use crate::util::{median, secs};
use pcore::{Durability, NodeId, Store, StoreOptions};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// Checkpoints timed per size (after a first, untimed one that follows the load).
const REPS: usize = 3;

/// Store sizes and changes per checkpoint: the 1 M / 4 M / 10 M nodes and 100 k
/// changes, or a tenth of each with `quick`.
pub fn sizes(quick: bool) -> (Vec<u64>, u64) {
    if quick {
        (vec![100_000, 400_000, 1_000_000], 10_000)
    } else {
        (vec![1_000_000, 4_000_000, 10_000_000], 100_000)
    }
}

/// What one size measured.
struct Figures {
    /// Median checkpoint time, and of it the median time not spent flushing class files.
    checkpoint_s: f64,
    table_s: f64,
    bytes_per_node: f64,
    reopen_s: f64,
}

/// One size: `nodes` 64-byte records loaded and checkpointed, then `REPS` rounds of
/// `changes` rewrites of random records, a commit and a timed checkpoint.
fn one(dir: &Path, nodes: u64, changes: u64) -> Result<Figures, String> {
    let e = |e: pcore::Error| e.to_string();
    let opts = StoreOptions {
        durability: Durability::Balanced,
        checkpoint_log_bytes: u64::MAX / 2, // only the checkpoints timed here
        ..StoreOptions::default()
    };
    let store = Store::open(dir, &opts).map_err(e)?;
    let mut ids: Vec<NodeId> = Vec::with_capacity(nodes as usize);
    let mut rec = [0u8; 64];
    for i in 0..nodes {
        let id = store.allocate(64, 5).map_err(e)?.0;
        rec[..8].copy_from_slice(&i.to_le_bytes());
        store.publish(id, &rec).map_err(e)?;
        ids.push(id);
        if (i + 1) % 100_000 == 0 {
            store.commit().map_err(e)?;
        }
    }
    store.commit().map_err(e)?;
    store.checkpoint().map_err(e)?;
    let mut rng = pcore::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
    let (mut times, mut table_times) = (Vec::new(), Vec::new());
    for round in 0..REPS as u64 {
        for _ in 0..changes {
            let x = rng.next();
            let id = ids[(x % nodes) as usize];
            rec[8..16].copy_from_slice(&round.to_le_bytes());
            store.publish(id, &rec).map_err(e)?;
        }
        // Timed by the store's own checkpoint clock, over the commit and the checkpoint: a
        // commit may checkpoint itself (to keep the footprint near the live bytes), and then
        // the explicit one finds little left to do.
        let before = store.stats().map_err(e)?;
        store.commit().map_err(e)?;
        store.checkpoint().map_err(e)?;
        let after = store.stats().map_err(e)?;
        let spent = after.checkpoint_seconds - before.checkpoint_seconds;
        times.push(spent);
        table_times.push(spent - (after.checkpoint_flush_seconds - before.checkpoint_flush_seconds));
    }
    let pieces = store.stats().map_err(e)?.checkpoint_bytes;
    store.close().map_err(e)?;
    drop(store);
    let t = Instant::now();
    let s = Store::open(dir, &opts).map_err(e)?;
    let reopen_s = secs(t);
    s.close().map_err(e)?;
    Ok(Figures {
        checkpoint_s: median(times),
        table_s: median(table_times),
        bytes_per_node: pieces as f64 / nodes as f64,
        reopen_s,
    })
}

/// Runs every size in `work` (each in its own directory, removed after) and prints a row.
pub fn run(work: &Path, quick: bool) -> Result<Value, String> {
    let (sizes, changes) = sizes(quick);
    println!("checkpoint at scale: a checkpoint after {changes} rewrites of random 64 B records (median of {REPS})");
    println!(
        "  {:<10} {:>14} {:>8} {:>16} {:>8} {:>12} {:>9}",
        "nodes", "checkpoint ms", "vs 1st", "table part ms", "vs 1st", "ckpt B/node", "reopen s"
    );
    let mut rows = Vec::new();
    let mut first: Option<(f64, f64)> = None;
    for &n in &sizes {
        let dir = work.join(format!("ckpt-{n}"));
        let f = one(&dir, n, changes)?;
        let _ = std::fs::remove_dir_all(&dir);
        let (t0, p0) = *first.get_or_insert((f.checkpoint_s, f.table_s));
        println!(
            "  {n:<10} {:>14.1} {:>8.2} {:>16.1} {:>8.2} {:>12.2} {:>9.3}",
            f.checkpoint_s * 1e3,
            f.checkpoint_s / t0,
            f.table_s * 1e3,
            f.table_s / p0,
            f.bytes_per_node,
            f.reopen_s
        );
        rows.push(json!({
            "nodes": n, "changes": changes, "checkpoint_s": f.checkpoint_s, "vs_smallest": f.checkpoint_s / t0,
            "table_part_s": f.table_s, "table_part_vs_smallest": f.table_s / p0,
            "checkpoint_bytes_per_node": f.bytes_per_node, "reopen_s": f.reopen_s,
        }));
    }
    println!("  (the table part is the checkpoint less its flush of the class files, whose dirty pages");
    println!("  grow with the store when small records change at random; targets: within 1.5x of the");
    println!("  smallest, <= 4 checkpoint bytes per node, reopen < 0.5 s)\n");
    Ok(json!(rows))
}
