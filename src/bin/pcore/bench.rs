//! `pcore bench`: the node store against its peers, each measured in the same run.
//! Every figure is the median of several repetitions; ratios are pcore / peer time, so
//! below 1.0 means pcore is faster.

use crate::util::{dir_bytes, median, mib, open_fds, pattern, peak_rss_bytes, secs, Args, WorkDir};
use pcore::{Durability, NodeId, Store, StoreOptions};
use std::hint::black_box;
use std::io::Write;
use std::time::Instant;

const REPS: usize = 5;

pub fn run(args: &Args) -> Result<(), String> {
    let nodes = args.count.unwrap_or(if args.quick { 1_000_000 } else { 10_000_000 });
    let work = WorkDir::new(args.dir.as_deref(), "bench", false)?;
    println!("pcore bench: medians of {REPS} runs; ratio = pcore time / peer time (< 1 is faster)\n");
    println!("{:<44} {:>12} {:>12} {:>8}", "measure", "pcore", "peer", "ratio");
    let (p, m, c) = alloc_free_vs_malloc(&sizes(256, 4096));
    row("allocate+free, mixed 256 B-4 KiB (ns/pair)", p, m, "glibc malloc/free");
    row("  same; pcore zero-fills, so also vs calloc", p, c, "glibc calloc/free");
    let (p, m, c) = alloc_free_vs_malloc(&sizes(64, 64));
    row("allocate+free, 64 B records (ns/pair)", p, m, "glibc malloc/free");
    row("  same, vs calloc", p, c, "glibc calloc/free");
    let (p, c) = publish_vs_memcpy();
    row("publish a hot 4 KiB node (ns)", p, c, "memcpy 4 KiB");
    let (p, f) = strict_commit_vs_fdatasync(&work.path)?;
    row("STRICT commit of one node (us)", p, f, "write+fdatasync 4 KiB");
    println!();
    bulk(&work.path.join("bulk"), nodes)
}

fn row(name: &str, pcore: f64, peer: f64, peer_name: &str) {
    println!("{name:<44} {pcore:>12.1} {peer:>12.1} {:>8.2}   peer: {peer_name}", pcore / peer);
}

const ALLOC_OPS: usize = 400_000;
const ALLOC_LIVE: usize = 4096;

/// Sizes drawn uniformly from `min..=max`, the same sequence for every allocator.
fn sizes(min: usize, max: usize) -> Vec<usize> {
    let mut s = vec![0u8; (ALLOC_OPS + ALLOC_LIVE) * 2];
    pattern(7, &mut s);
    s.chunks(2).map(|c| min + (u16::from_le_bytes([c[0], c[1]]) as usize % (max - min + 1))).collect()
}

/// A working set of live blocks; each step frees the oldest and allocates a new one.
/// Returns ns per pair for pcore, malloc/free and calloc/free.
fn alloc_free_vs_malloc(sz: &[usize]) -> (f64, f64, f64) {
    const LIVE: usize = ALLOC_LIVE;
    const OPS: usize = ALLOC_OPS;
    let store = Store::in_memory(&StoreOptions::default()).expect("in-memory store");
    let mut pcore_runs = Vec::new();
    let mut malloc_runs = Vec::new();
    let mut calloc_runs = Vec::new();
    for _ in 0..REPS {
        let mut ring: Vec<NodeId> = (0..LIVE).map(|i| store.allocate(sz[i], 1).expect("allocate").0).collect();
        let t = Instant::now();
        for i in 0..OPS {
            let slot = i % LIVE;
            store.free(ring[slot]).expect("free");
            ring[slot] = store.allocate(sz[LIVE + i], 1).expect("allocate").0;
        }
        pcore_runs.push(t.elapsed().as_nanos() as f64 / OPS as f64);
        ring.into_iter().for_each(|id| store.free(id).expect("free"));

        // SAFETY: plain malloc/free pairs of the C library; every pointer is freed once.
        let mut ring: Vec<*mut libc::c_void> = (0..LIVE).map(|i| unsafe { libc::malloc(sz[i]) }).collect();
        let t = Instant::now();
        for i in 0..OPS {
            let slot = i % LIVE;
            // SAFETY: as above.
            unsafe {
                libc::free(ring[slot]);
                ring[slot] = black_box(libc::malloc(sz[LIVE + i]));
            }
        }
        malloc_runs.push(t.elapsed().as_nanos() as f64 / OPS as f64);
        let t = Instant::now();
        for i in 0..OPS {
            let slot = i % LIVE;
            // SAFETY: as above; calloc'd pointers are freed once too.
            unsafe {
                libc::free(ring[slot]);
                ring[slot] = black_box(libc::calloc(1, sz[LIVE + i]));
            }
        }
        calloc_runs.push(t.elapsed().as_nanos() as f64 / OPS as f64);
        // SAFETY: as above.
        ring.into_iter().for_each(|p| unsafe { libc::free(p) });
    }
    (median(pcore_runs), median(malloc_runs), median(calloc_runs))
}

fn publish_vs_memcpy() -> (f64, f64) {
    const OPS: usize = 1_000_000;
    let store = Store::in_memory(&StoreOptions::default()).expect("in-memory store");
    let id = store.allocate(4096, 1).expect("allocate").0;
    let mut src = vec![0u8; 4096];
    pattern(3, &mut src);
    let mut dst = vec![0u8; 4096];
    let mut pcore_runs = Vec::new();
    let mut copy_runs = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        for i in 0..OPS {
            src[0] = i as u8;
            store.publish(id, black_box(&src)).expect("publish");
        }
        pcore_runs.push(t.elapsed().as_nanos() as f64 / OPS as f64);
        let t = Instant::now();
        for i in 0..OPS {
            src[0] = i as u8;
            dst.copy_from_slice(black_box(&src));
            black_box(&mut dst);
        }
        copy_runs.push(t.elapsed().as_nanos() as f64 / OPS as f64);
    }
    (median(pcore_runs), median(copy_runs))
}

fn strict_commit_vs_fdatasync(dir: &std::path::Path) -> Result<(f64, f64), String> {
    const COMMITS: usize = 200;
    let path = dir.join("strict");
    let store = Store::open(&path, &StoreOptions { durability: Durability::Strict, ..StoreOptions::default() })
        .map_err(|e| e.to_string())?;
    let id = store.allocate(64, 1).map_err(|e| e.to_string())?.0;
    let mut file = std::fs::File::create(dir.join("fdatasync-peer")).map_err(|e| e.to_string())?;
    let block = vec![7u8; 4096];
    let mut pcore_runs = Vec::new();
    let mut sync_runs = Vec::new();
    for _ in 0..REPS {
        let t = Instant::now();
        for i in 0..COMMITS {
            store.publish(id, &[i as u8; 64]).map_err(|e| e.to_string())?;
            store.commit().map_err(|e| e.to_string())?;
        }
        pcore_runs.push(t.elapsed().as_secs_f64() * 1e6 / COMMITS as f64);
        let t = Instant::now();
        for _ in 0..COMMITS {
            file.write_all(&block).map_err(|e| e.to_string())?;
            file.sync_data().map_err(|e| e.to_string())?;
        }
        sync_runs.push(t.elapsed().as_secs_f64() * 1e6 / COMMITS as f64);
    }
    store.close().map_err(|e| e.to_string())?;
    Ok((median(pcore_runs), median(sync_runs)))
}

/// XTree's stress shape: 64-byte records, a commit every 100,000; then close and reopen.
fn bulk(dir: &std::path::Path, nodes: u64) -> Result<(), String> {
    const COMMIT_EVERY: u64 = 100_000;
    let opts = StoreOptions { durability: Durability::Balanced, ..StoreOptions::default() };
    let store = Store::open(dir, &opts).map_err(|e| e.to_string())?;
    let mut rec = [0u8; 64];
    let t = Instant::now();
    for i in 0..nodes {
        let id = store.allocate(64, 5).map_err(|e| e.to_string())?.0;
        rec[..8].copy_from_slice(&i.to_le_bytes());
        store.publish(id, &rec).map_err(|e| e.to_string())?;
        if (i + 1) % COMMIT_EVERY == 0 {
            store.commit().map_err(|e| e.to_string())?;
        }
    }
    store.commit().map_err(|e| e.to_string())?;
    let load_s = secs(t);
    let live = store.stats().map_err(|e| e.to_string())?.total.live_bytes;
    let fds = open_fds();
    store.close().map_err(|e| e.to_string())?;
    drop(store);
    let disk = dir_bytes(dir);
    let mut reopen = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let s = Store::open(dir, &opts).map_err(|e| e.to_string())?;
        reopen.push(secs(t));
        s.close().map_err(|e| e.to_string())?;
    }
    println!("bulk load: {nodes} nodes of 64 B, a commit every {COMMIT_EVERY} (BALANCED)");
    println!("  {:<40} {:>12.0}   (XTree's store: 30,000)", "nodes/s", nodes as f64 / load_s);
    println!("  {:<40} {:>12.1}   (XTree's store: 440)", "bytes on disk per node", disk as f64 / nodes as f64);
    println!("  {:<40} {:>12.2}   (target <= 1.3)", "disk / block bytes in use", disk as f64 / live as f64);
    println!("  {:<40} {:>12.3}   (median of 3; XTree's store: 13.2 s at 10 M)", "reopen s", median(reopen));
    println!("  {:<40} {:>12.0}   (VmHWM of this process)", "peak memory MiB", mib(peak_rss_bytes()));
    println!("  {:<40} {:>12}   (whole process, during the load)", "open file descriptors", fds);
    Ok(())
}
