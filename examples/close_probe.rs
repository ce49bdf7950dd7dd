//! Issue 17 item 4: the close of an unchanged store. `build` fills DIR with N random 16-byte
//! keys and 100-byte values in one STRICT commit (bulk_commit_bench's random load); `cycle`
//! reopens it, looks one key up and closes it R times, printing the median close in
//! microseconds. Under `strace -f` the close sits between the two "close-" markers on stderr.
//!
//! cargo run --release --example close_probe -- DIR build [N] | DIR cycle [R]

use pcore::btree::{BTree, TreeOptions};
use pcore::{Durability, Store, StoreOptions};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: close_probe DIR build|cycle [N]");
    let n: u64 = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(0);
    let opts = StoreOptions { durability: Durability::Strict, ..StoreOptions::default() };
    if args.get(2).is_some_and(|a| a == "build") {
        let _ = std::fs::remove_dir_all(dir);
        let store = Store::open(dir, &opts).expect("open");
        let tree = BTree::open(&store, b"t", &TreeOptions::default()).expect("tree");
        let mut rng = pcore::test_rng::TestRng::new(7);
        for i in 0..n.max(1) {
            let key = [rng.next().to_be_bytes(), i.to_be_bytes()].concat();
            tree.insert(&key, &[0x5A; 100]).expect("insert");
        }
        store.commit().expect("commit");
        drop(tree);
        store.close().expect("close");
        return;
    }
    let mut us = Vec::new();
    for _ in 0..n.max(1) {
        let store = Store::open(dir, &opts).expect("open");
        let tree = BTree::open(&store, b"t", &TreeOptions::default()).expect("tree");
        let _ = tree.get(&[0; 24]).expect("get");
        drop(tree);
        if std::env::var("SMAPS").is_ok() {
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let mut name = String::new();
            for l in smaps.lines() {
                if l.contains('-') && l.split_whitespace().count() >= 5 {
                    name = l.to_string();
                }
                if l.starts_with("Rss:") && (name.contains(".seg") || name.contains("readers") || name.contains("---p"))
                {
                    eprintln!("{name} {l}");
                }
            }
        }
        eprintln!("close-begin");
        let t = Instant::now();
        store.close().expect("close");
        us.push(t.elapsed().as_secs_f64() * 1e6);
        eprintln!("close-end");
    }
    us.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!("median close {:.1} us over {}", us[us.len() / 2], us.len());
}
