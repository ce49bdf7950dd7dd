//! Large values (issue 17 item 2): N values of 16 KiB (over the inline maximum, so synced
//! rather than logged) allocated, published and committed once (STRICT). Prints the commit's
//! time. Not a test: it asserts nothing.
//!
//! cargo run --release --example large_bench -- [dir] [values]

use pcore::{Durability, Store, StoreOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_else(|| "/tmp/pcore-large-bench".into()));
    let values: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, &StoreOptions { durability: Durability::Strict, ..StoreOptions::default() }).unwrap();
    let value = vec![0xA5u8; 16 << 10];
    let t0 = Instant::now();
    for i in 0..values {
        let id = store.allocate(value.len(), 1).unwrap().0;
        let mut v = value.clone();
        v[..8].copy_from_slice(&(i as u64).to_le_bytes());
        store.publish(id, &v).unwrap();
    }
    let publish_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    store.commit().unwrap();
    let commit_s = t1.elapsed().as_secs_f64();
    println!("{values} values of 16 KiB: publish {publish_s:.3} s, commit {commit_s:.3} s");
    store.close().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
