//! Issue 17 item 5: `pcore bench`'s two STRICT rows ("reopened", "after a checkpoint"), each
//! beside a 4 KiB `pwrite` + `fdatasync` in place on the same file system, repeated over
//! `cycles` close/reopen cycles so the two states alternate in one process (the disk's sync
//! latency drifts from minute to minute on a shared machine). Prints, per cycle, the median
//! commit and peer of each state in microseconds, then the medians of the ratios.
//!
//! cargo run --release --example strict_commit_rows -- DIR [cycles] [commits]

use pcore::{Durability, Store, StoreOptions};
use std::os::unix::fs::FileExt;
use std::time::Instant;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Bytes this process caused to be written to storage so far (`/proc/self/io`).
fn write_bytes() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("write_bytes: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: strict_commit_rows DIR [cycles] [commits]"));
    let cycles: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5);
    let commits: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(200);
    let _ = std::fs::remove_dir_all(&dir);
    let opts = StoreOptions { durability: Durability::Strict, ..StoreOptions::default() };
    let store = Store::open(&dir, &opts).unwrap();
    let id = store.allocate(64, 1).unwrap().0;
    for i in 0..6 * commits {
        store.publish(id, &[i as u8; 64]).unwrap();
        store.commit().unwrap();
    }
    store.close().unwrap();
    let peer = std::fs::File::create(dir.join("fdatasync-peer")).unwrap();
    peer.write_all_at(&[7u8; 4096], 0).unwrap();
    peer.sync_all().unwrap();
    // One commit, then one peer write, in turn: both see the disk in the same state. Per-op
    // medians of the round.
    let round = |store: &Store| -> (f64, f64) {
        let (mut ps, mut fs) = (Vec::new(), Vec::new());
        for i in 0..commits {
            let t = Instant::now();
            store.publish(id, &[i as u8; 64]).unwrap();
            store.commit().unwrap();
            ps.push(t.elapsed().as_secs_f64() * 1e6);
            let t = Instant::now();
            peer.write_all_at(&[7u8; 4096], 0).unwrap();
            peer.sync_data().unwrap();
            fs.push(t.elapsed().as_secs_f64() * 1e6);
        }
        if std::env::var("PERCENTILES").is_ok() {
            let q = |mut v: Vec<f64>| -> String {
                v.sort_by(|a, b| a.partial_cmp(b).unwrap());
                [10, 25, 50, 75, 90]
                    .iter()
                    .map(|p| format!("{:.0}", v[v.len() * p / 100]))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            println!("  p10 p25 p50 p75 p90: commit {}  peer {}", q(ps.clone()), q(fs.clone()));
        }
        (median(ps), median(fs))
    };
    // Bytes written to storage per commit in each state, commits alone (a close and reopen
    // between the two, as in the cycles below).
    let bytes_per_commit = |store: &Store| -> f64 {
        let before = write_bytes();
        for i in 0..commits {
            store.publish(id, &[i as u8; 64]).unwrap();
            store.commit().unwrap();
        }
        (write_bytes() - before) as f64 / commits as f64
    };
    let store = Store::open(&dir, &opts).unwrap();
    let r = bytes_per_commit(&store);
    store.checkpoint().unwrap();
    let c = bytes_per_commit(&store);
    store.close().unwrap();
    let sectors = || -> u64 {
        let stat = std::fs::read_to_string("/sys/block/vda/stat").unwrap_or_default();
        stat.split_whitespace().nth(6).and_then(|v| v.parse().ok()).unwrap_or(0)
    };
    let (before, sectors_before) = (write_bytes(), sectors());
    for _ in 0..commits {
        peer.write_all_at(&[7u8; 4096], 0).unwrap();
        peer.sync_data().unwrap();
    }
    let (peer_bytes, peer_sectors) = (write_bytes() - before, sectors() - sectors_before);
    let store = Store::open(&dir, &opts).unwrap();
    let sectors_before = sectors();
    let _ = bytes_per_commit(&store);
    let commit_sectors = sectors() - sectors_before;
    store.close().unwrap();
    println!(
        "bytes written per commit: reopened {r:.0}, checkpointed {c:.0}; peer {:.0}; device sectors per op: commit {:.1}, peer {:.1}",
        peer_bytes as f64 / commits as f64,
        commit_sectors as f64 / commits as f64,
        peer_sectors as f64 / commits as f64
    );
    let (mut reopened, mut checkpointed) = (Vec::new(), Vec::new());
    for cycle in 0..cycles {
        let store = Store::open(&dir, &opts).unwrap();
        let r: Vec<(f64, f64)> = (0..3).map(|_| round(&store)).collect();
        store.checkpoint().unwrap();
        let c: Vec<(f64, f64)> = (0..3).map(|_| round(&store)).collect();
        store.close().unwrap();
        let (rp, rf) = (median(r.iter().map(|x| x.0).collect()), median(r.iter().map(|x| x.1).collect()));
        let (cp, cf) = (median(c.iter().map(|x| x.0).collect()), median(c.iter().map(|x| x.1).collect()));
        println!(
            "cycle {cycle}: reopened {rp:.1} / {rf:.1} = {:.2}   checkpointed {cp:.1} / {cf:.1} = {:.2}",
            rp / rf,
            cp / cf
        );
        reopened.push(rp / rf);
        checkpointed.push(cp / cf);
    }
    if cycles > 0 {
        println!("median ratio: reopened {:.2}, checkpointed {:.2}", median(reopened), median(checkpointed));
    }
}
