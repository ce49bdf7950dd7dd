//! Instructions of B+ tree inserts and removes, for callgrind: loads N keys (8-byte, random or
//! sequential order) into an in-memory store's tree and, with `remove`, removes them all in the
//! same order. Not a test.
//!
//! cargo run --release --example remove_calls -- [entries] [random|sequential] [load|remove]

use pcore::btree::{BTree, TreeOptions};
use pcore::{Store, StoreOptions};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let random = args.get(2).map(String::as_str) != Some("sequential");
    let remove = args.get(3).map(String::as_str) == Some("remove");
    let store = Store::in_memory(&StoreOptions::default()).unwrap();
    let tree = BTree::open(&store, b"t", &TreeOptions::default()).unwrap();
    let key = |i: u64| if random { i.wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes() } else { i.to_be_bytes() };
    for i in 0..n {
        tree.insert(&key(i), &i.to_le_bytes()).unwrap();
    }
    if remove {
        for i in 0..n {
            assert!(tree.remove(&key(i)).unwrap());
        }
    }
    println!("{} entries left", tree.len());
}
