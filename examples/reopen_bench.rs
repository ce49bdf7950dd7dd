//! Times opening an existing store (writable, as `pcore demo`'s reopen does) and closing it
//! without a change: `cargo run --release --example reopen_bench -- DIR [RUNS]`. Prints each
//! open's wall and CPU time, then the medians.

use pcore::{Durability, Store, StoreOptions};
use std::time::Instant;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: reopen_bench DIR [RUNS]");
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(5);
    let opts = StoreOptions { durability: Durability::Balanced, ..StoreOptions::default() };
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for run in 0..runs {
        let (t, c) = (Instant::now(), cpu_seconds());
        let store = Store::open(dir, &opts).expect("open");
        let (wall, cpu) = (t.elapsed().as_secs_f64(), cpu_seconds() - c);
        println!(
            "open {run}: wall {wall:.3} s, cpu {cpu:.2} s, nodes {}",
            store.stats().map(|s| s.live_nodes).unwrap_or(0)
        );
        store.close().expect("close");
        walls.push(wall);
        cpus.push(cpu);
    }
    println!("median: wall {:.3} s, cpu {:.2} s", median(&mut walls), median(&mut cpus));
}
