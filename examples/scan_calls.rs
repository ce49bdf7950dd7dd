//! The C cursor calls' cost per entry (issue 16 item 3): a tree of N random 24-byte keys with
//! 8-byte values, inserted through the C ABI and committed, then scanned through
//! `pcore_cursor_next` + `pcore_cursor_get`, `pcore_cursor_next_get` and
//! `pcore_cursor_next_batch`. Prints ns per entry; under `valgrind --tool=callgrind` pick one
//! scan with the third argument (pair, next_get, batch) to count its instructions. Not a test.
//!
//! cargo run --release --example scan_calls -- [entries] [rounds] [pair|next_get|batch|all]

use pcore::ffi::btree::*;
use pcore::ffi::cursor::*;
use pcore::ffi::store::*;
use pcore::ffi::types::*;
use std::ffi::CString;
use std::time::Instant;

fn ok(rc: i32, what: &str) {
    assert_eq!(rc, 0, "{what}");
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let rounds: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let which = args.get(3).cloned().unwrap_or_else(|| "all".into());
    let dir = std::env::temp_dir().join(format!("pcore-scan-calls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cdir = CString::new(dir.to_str().unwrap()).unwrap();
    // SAFETY: valid pointers to live locals throughout; the handles are used as the ABI says.
    unsafe {
        let mut store = std::ptr::null_mut();
        ok(pcore_store_open(cdir.as_ptr(), std::ptr::null(), &mut store), "open");
        let mut tree = std::ptr::null_mut();
        ok(pcore_tree_open(store, c"t".as_ptr(), 1, std::ptr::null(), &mut tree), "tree");
        let mut rng = pcore::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
        for i in 0..n {
            let mut key = [0u8; 24];
            for chunk in key.chunks_mut(8) {
                let x = rng.next();
                chunk.copy_from_slice(&x.to_be_bytes());
            }
            let v = i.to_le_bytes();
            ok(pcore_tree_insert(tree, key.as_ptr().cast(), 24, v.as_ptr().cast(), 8), "insert");
        }
        ok(pcore_store_commit(store, std::ptr::null_mut()), "commit");
        let mut buf = vec![0u64; 8192];
        for round in 0..rounds {
            for scan in ["pair", "next_get", "batch"] {
                if which != "all" && which != scan {
                    continue;
                }
                let mut c = std::ptr::null_mut();
                ok(pcore_cursor_open(tree, &mut c), "cursor");
                ok(pcore_cursor_first(c), "first");
                let t0 = Instant::now();
                let (mut count, mut sum) = (0u64, 0u64);
                let mut k = PcoreBytes { data: std::ptr::null(), len: 0 };
                let mut v = PcoreBytes { data: std::ptr::null(), len: 0 };
                match scan {
                    "pair" => {
                        while pcore_cursor_get(c, &mut k, &mut v) == 0 {
                            count += 1;
                            sum += v.len as u64;
                            ok(pcore_cursor_next(c), "next");
                        }
                    }
                    "next_get" => {
                        let mut rc = pcore_cursor_get(c, &mut k, &mut v);
                        while rc == 0 {
                            count += 1;
                            sum += v.len as u64;
                            rc = pcore_cursor_next_get(c, &mut k, &mut v);
                        }
                    }
                    _ => {
                        let (mut got, mut used) = (0usize, 0usize);
                        while pcore_cursor_next_batch(c, buf.as_mut_ptr().cast(), buf.len() * 8, &mut got, &mut used)
                            == 0
                        {
                            count += got as u64;
                            sum += used as u64;
                        }
                    }
                }
                let ns = t0.elapsed().as_nanos() as f64 / n as f64;
                assert_eq!(count, n, "{scan}");
                std::hint::black_box(sum);
                ok(pcore_cursor_close(c), "close");
                println!("round {round} {scan:>8}: {ns:6.2} ns/entry");
            }
        }
        ok(pcore_tree_close(tree), "tree close");
        ok(pcore_store_close(store), "store close");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
