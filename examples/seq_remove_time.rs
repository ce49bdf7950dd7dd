//! Sequential (and random) removes timed from Rust, the shape of btree_bench's remove rows
//! without the C ABI: a file store (EVENTUAL), N random keys of W bytes bulk-loaded in key
//! order (sequential) or inserted in random order (random), committed, then every key removed
//! in key order (or another random order) and committed. Prints ns/remove per run and the
//! median. Not a test: it asserts only that every remove found its key.
//!
//! cargo run --release --example seq_remove_time -- [dir] [entries] [width] [runs] [sequential|random]

use pcore::btree::{BTree, TreeOptions};
use pcore::{Durability, Store, StoreOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).map_or("/tmp/seq_remove_time", String::as_str));
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let width: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(8);
    let runs: usize = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(3);
    let sequential = args.get(5).map(String::as_str) != Some("random");
    let mut rng = pcore::test_rng::TestRng::new(0x5EED);
    // Keys as pairs of words, sorted as numbers (their big-endian bytes sort the same way):
    // the setup stays small beside the removes in a profile.
    let words = width.div_ceil(8);
    let mut pairs: Vec<(u64, u64)> = (0..n).map(|_| (rng.next(), if words > 1 { rng.next() } else { 0 })).collect();
    pairs.sort_unstable();
    pairs.dedup();
    // Contiguous, in key order, as the C bench's key sets: a remove's probe key is not a miss.
    let mut flat: Vec<u8> = Vec::with_capacity(pairs.len() * width);
    for (a, b) in &pairs {
        let mut k = [a.to_be_bytes(), b.to_be_bytes()].concat();
        k.truncate(width);
        flat.extend_from_slice(&k);
    }
    let keys: Vec<&[u8]> = flat.chunks(width).collect();
    let mut order: Vec<usize> = (0..keys.len()).collect();
    let mut times = Vec::new();
    for run in 0..runs {
        let _ = std::fs::remove_dir_all(&dir);
        let opts = StoreOptions { durability: Durability::Eventual, ..StoreOptions::default() };
        let store = Store::open(&dir, &opts).unwrap();
        let tree = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
        if sequential {
            tree.bulk_load(keys.iter().enumerate().map(|(i, k)| (*k, (i as u64).to_le_bytes()))).unwrap();
        } else {
            for i in (0..order.len()).rev() {
                order.swap(i, rng.next() as usize % (i + 1));
            }
            for &i in &order {
                tree.insert(keys[i], &(i as u64).to_le_bytes()).unwrap();
            }
            for i in (0..order.len()).rev() {
                order.swap(i, rng.next() as usize % (i + 1));
            }
        }
        store.commit().unwrap();
        let t0 = Instant::now();
        for &i in &order {
            assert!(tree.remove(keys[i]).unwrap());
        }
        store.commit().unwrap();
        let ns = t0.elapsed().as_secs_f64() * 1e9 / keys.len() as f64;
        eprintln!("run {run}: {ns:.0} ns/remove");
        times.push(ns);
        drop(tree);
        drop(store);
    }
    let _ = std::fs::remove_dir_all(&dir);
    times.sort_by(f64::total_cmp);
    println!("median {:.0} ns/remove ({} {}-byte keys)", times[times.len() / 2], keys.len(), width);
}
