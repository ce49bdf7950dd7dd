//! Times a read-only open of a store whose reused log holds an earlier generation's frames
//! past its last one (docs/LOG.md, "Reusing log space"): the open reads the file and looks
//! past the frames for a header of its generation. `cargo run --release --example
//! log_scan_open -- DIR [build]`: with `build`, first writes 40,000 nodes of 4,000 bytes,
//! rewrites 10,000 of them (~19 MiB of log), checkpoints, commits 10 more versions and
//! stops as a killed process would. Prints the log file's size and the median of 7 opens.

use pcore::store::{Store, StoreOptions};

fn build(dir: &std::path::Path) {
    let _ = std::fs::remove_dir_all(dir);
    let s = Store::open(dir, &StoreOptions { checkpoint_log_bytes: 1 << 30, ..StoreOptions::default() }).unwrap();
    let ids: Vec<_> = (0..40_000u64)
        .map(|i| {
            let id = s.allocate(4000, 1).unwrap().0;
            s.publish(id, &vec![(i % 251) as u8; 4000]).unwrap();
            id
        })
        .collect();
    s.commit().unwrap();
    for (i, id) in ids.iter().enumerate().take(10_000) {
        s.publish(*id, &vec![(i as u64 * 7) as u8; 4000]).unwrap();
    }
    s.commit().unwrap();
    s.checkpoint().unwrap();
    for (i, id) in ids.iter().enumerate().take(10) {
        s.publish(*id, &vec![i as u8; 4000]).unwrap();
        s.commit().unwrap();
    }
    s.simulate_crash();
}

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    if std::env::args().nth(2).as_deref() == Some("build") {
        build(&dir);
    }
    let read_only = StoreOptions { read_only: true, create: false, ..StoreOptions::default() };
    let mut times: Vec<_> = (0..7)
        .map(|_| {
            let t = std::time::Instant::now();
            let s = Store::open(&dir, &read_only).unwrap();
            let took = t.elapsed();
            s.close().unwrap();
            took
        })
        .collect();
    times.sort();
    let log: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("wal-"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    println!("log file {} MiB, read-only open median {:?}", log >> 20, times[3]);
}
