//! Where a store's bytes are during statement-sized commits (issues 17 item 1 and 18 item 1
//! together): 100,000 random 17-byte keys with 8-byte values, a STRICT commit every 500, and
//! every 20,000 rows the directory against the live bytes, split into class files (their
//! free blocks, pending frees and held bases), log and checkpoint; then the same once the
//! store has been at rest for longer than `idle_checkpoint_ms` (its background thread
//! checkpoints it). Not a test: it asserts nothing. See docs/LOG.md, "Statement-sized commits
//! and the footprint together".
//!
//! cargo run --release --example statement_footprint -- DIR

use pcore::btree::{BTree, TreeOptions};
use pcore::{Durability, Store, StoreOptions};
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    let s = Store::open(&dir, &StoreOptions { durability: Durability::Strict, ..StoreOptions::default() }).unwrap();
    let t = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    s.commit().unwrap();
    let mut rng = pcore::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
    for i in 0..100_000u64 {
        let x = rng.next();
        let mut key = [0u8; 17];
        key[..8].copy_from_slice(&x.to_be_bytes());
        key[8..16].copy_from_slice(&i.to_be_bytes());
        t.insert(&key, &i.to_le_bytes()).unwrap();
        if (i + 1) % 500 == 0 {
            s.commit().unwrap();
        }
        if (i + 1) % 20_000 == 0 {
            print_footprint(&format!("{:>6} rows", i + 1), &s);
        }
    }
    let idle = StoreOptions::default().idle_checkpoint_ms;
    std::thread::sleep(std::time::Duration::from_millis(u64::from(idle) + 500));
    print_footprint(&format!("at rest {:.1} s", (idle + 500) as f64 / 1000.0), &s);
}

fn print_footprint(when: &str, s: &Store) {
    let st = s.stats().unwrap();
    let mb = |b: u64| b as f64 / 1048576.0;
    println!("{when}: dir {:.2} MiB live {:.2} ratio {:.2} | class files {:.2} (free {:.2} given back {:.2} pending {:.2} held bases {:.2}) log {:.2} ckpt {:.2} checkpoints {}",
        mb(st.directory_bytes), mb(st.live_bytes), st.footprint_ratio(), mb(st.data_file_bytes), mb(st.free_bytes), mb(st.given_back_bytes), mb(st.pending_free_bytes), mb(st.held_base_bytes), mb(st.log_bytes), mb(st.checkpoint_bytes), st.checkpoints);
}
