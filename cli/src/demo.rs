//! `pcore demo`: XTree's workload on a pcore store. Data records (64 bytes) are indexed by
//! 2-D buckets (7 + 32 bytes per child) that grow from empty, published after every child;
//! leaves hold 50 children, and one internal bucket collects the leaves until it is a
//! supernode of 150 children. A commit every 100,000 records, a churn phase that frees and
//! replaces records, then close, reopen, and a byte-for-byte check of every node.

use crate::util::{dir_bytes, mib, pattern, peak_rss_bytes, progress, secs, WorkDir};
use crate::Outcome;
use pcore::btree::{BTree, Duplicates, TreeOptions};
use pcore::{Durability, NodeId, Store, StoreOptions};
use std::time::Instant;

const RECORD_BYTES: usize = 64;
const LEAF_CHILDREN: usize = 50;
const SUPERNODE_CHILDREN: usize = 150;
const COMMIT_EVERY: u64 = 100_000;
/// Churn commits more often, so blocks freed by one commit are reused by the next ones.
const CHURN_COMMIT_EVERY: u64 = 5_000;
const KIND_INTERNAL: u8 = 1;
const KIND_LEAF: u8 = 2;
const KIND_RECORD: u8 = 5;

struct Bucket {
    id: NodeId,
    bytes: Vec<u8>,
}

impl Bucket {
    fn new(store: &Store, kind: u8) -> Result<Bucket, String> {
        let (id, _, _) = store.allocate(7, kind).map_err(|e| e.to_string())?;
        let mut bytes = vec![0u8; 7];
        bytes[0] = kind;
        store.publish(id, &bytes).map_err(|e| e.to_string())?;
        Ok(Bucket { id, bytes })
    }

    fn children(&self) -> usize {
        (self.bytes.len() - 7) / 32
    }

    /// Appends a child entry (MBR of four floats, its id, flags, padding) and republishes.
    fn push(&mut self, store: &Store, child: NodeId, n: u64) -> Result<(), String> {
        let f = n as f32;
        for v in [f, f + 1.0, f * 0.5, f * 0.5 + 2.0] {
            self.bytes.extend_from_slice(&v.to_le_bytes());
        }
        self.bytes.extend_from_slice(&child.raw().to_le_bytes());
        self.bytes.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0]);
        let count = self.children() as u16;
        self.bytes[1..3].copy_from_slice(&count.to_le_bytes());
        let id = store.publish(self.id, &self.bytes).map_err(|e| e.to_string())?;
        debug_assert_eq!(id, self.id, "stable ids");
        Ok(())
    }
}

/// Commits, adding the call's time (any checkpoint it took included) to `total`.
fn commit(store: &Store, total: &mut f64) -> Result<(), String> {
    let t = Instant::now();
    store.commit().map_err(|e| e.to_string())?;
    *total += secs(t);
    Ok(())
}

fn record_bytes(i: u64) -> [u8; RECORD_BYTES] {
    let mut b = [0u8; RECORD_BYTES];
    pattern(i, &mut b);
    b
}

pub fn run(dir: Option<&std::path::Path>, records: u64, rows: u64, keep: bool) -> Result<Outcome, String> {
    let work = WorkDir::new(dir, "demo", keep)?;
    let opts = StoreOptions { durability: Durability::Balanced, ..StoreOptions::default() };
    println!("pcore demo: {records} XTree data records in {}", work.path.display());

    let t_load = Instant::now();
    let store = Store::open(&work.path, &opts).map_err(|e| e.to_string())?;
    let mut ids: Vec<NodeId> = Vec::with_capacity(records as usize);
    let mut leaves: Vec<Bucket> = Vec::new();
    let mut internals: Vec<Bucket> = vec![Bucket::new(&store, KIND_INTERNAL)?];
    let mut leaf = Bucket::new(&store, KIND_LEAF)?;
    let mut commits = 0u64;
    let mut commit_s = 0.0;
    let bar = progress(records, "XTree: load records");
    for i in 0..records {
        if i % 4096 == 0 {
            bar.set_position(i);
        }
        let (id, _, _) = store.allocate(RECORD_BYTES, KIND_RECORD).map_err(|e| e.to_string())?;
        store.publish(id, &record_bytes(i)).map_err(|e| e.to_string())?;
        ids.push(id);
        leaf.push(&store, id, i)?;
        if leaf.children() == LEAF_CHILDREN {
            let full = std::mem::replace(&mut leaf, Bucket::new(&store, KIND_LEAF)?);
            if internals.last().expect("one internal").children() == SUPERNODE_CHILDREN {
                internals.push(Bucket::new(&store, KIND_INTERNAL)?);
            }
            internals.last_mut().expect("one internal").push(&store, full.id, i)?;
            leaves.push(full);
        }
        if (i + 1) % COMMIT_EVERY == 0 {
            commit(&store, &mut commit_s)?;
            commits += 1;
        }
    }
    bar.finish_and_clear();
    leaves.push(leaf);
    store.set_root(b"", internals[0].id.raw(), &[0u8; 16]).map_err(|e| e.to_string())?;
    commit(&store, &mut commit_s)?;
    let load_s = secs(t_load);

    // Churn: free every 10th record and replace it, as deletes and re-inserts would.
    let t_churn = Instant::now();
    let mut replaced = 0u64;
    let bar = progress(records / 10, "XTree: churn");
    for i in (0..records).step_by(10) {
        bar.inc(1);
        store.free(ids[i as usize]).map_err(|e| e.to_string())?;
        let (id, _, _) = store.allocate(RECORD_BYTES, KIND_RECORD).map_err(|e| e.to_string())?;
        store.publish(id, &record_bytes(i + records)).map_err(|e| e.to_string())?;
        ids[i as usize] = id;
        replaced += 1;
        if replaced.is_multiple_of(CHURN_COMMIT_EVERY) {
            commit(&store, &mut commit_s)?;
        }
    }
    commit(&store, &mut commit_s)?;
    bar.finish_and_clear();
    let churn_s = secs(t_churn);
    let before = store.stats().map_err(|e| e.to_string())?;
    let open_footprint = footprint(&before);
    store.verify().map_err(|e| format!("verify before close: {e}"))?;
    let t_close = Instant::now();
    store.close().map_err(|e| e.to_string())?;
    let close_s = secs(t_close);
    drop(store);

    let t_reopen = Instant::now();
    let store = Store::open(&work.path, &opts).map_err(|e| e.to_string())?;
    let reopen_s = secs(t_reopen);
    let t_verify = Instant::now();
    let mut bad = 0u64;
    let bar = progress(records, "XTree: verify after reopen");
    for (i, id) in ids.iter().enumerate() {
        let i = i as u64;
        if i.is_multiple_of(4096) {
            bar.set_position(i);
        }
        let expected = if i.is_multiple_of(10) { record_bytes(i + records) } else { record_bytes(i) };
        if store.with_node(*id, |b| b == expected).unwrap_or(false) {
            continue;
        }
        bad += 1;
    }
    for b in leaves.iter().chain(&internals) {
        if !store.with_node(b.id, |got| got == b.bytes.as_slice()).unwrap_or(false) {
            bad += 1;
        }
    }
    let root = store.get_root(b"").map_err(|e| e.to_string())?;
    if root.map(|r| r.id) != Some(internals[0].id.raw()) {
        bad += 1;
    }
    bar.finish_and_clear();
    store.verify().map_err(|e| format!("verify after reopen: {e}"))?;
    let verify_s = secs(t_verify);
    let after = store.stats().map_err(|e| e.to_string())?;
    let disk = dir_bytes(&work.path);
    let nodes = after.live_nodes;

    println!();
    println!(
        "  nodes                {nodes} ({records} records, {} leaf and {} internal buckets)",
        leaves.len(),
        internals.len()
    );
    println!("  commits              {} during load, epoch {}", commits + 1, after.epoch);
    println!(
        "  bucket reallocations {} ({:.2} per bucket; a bucket grows 7 B -> {} B)",
        before.reallocations,
        before.reallocations as f64 / (leaves.len() + internals.len()) as f64,
        7 + 32 * SUPERNODE_CHILDREN
    );
    println!("  churn                {replaced} records freed and replaced");
    println!("  reuse rate           {:.1} % (allocs from freed blocks / frees)", 100.0 * before.total.reuse_rate());
    println!("  fragmentation        {:.1} % after churn (dead / (live + dead))", 100.0 * after.total.fragmentation());
    println!("  size classes in use:");
    for c in before.classes.iter().filter(|c| c.total_allocations > 0 || c.live_bytes > 0) {
        println!(
            "    {:>6} B  live {:>9.1} MiB  dead {:>7.1} MiB  segments {:>4}  bump {:>8}  reused {:>8}  frees {:>8}",
            c.class_bytes,
            mib(c.live_bytes),
            mib(c.dead_bytes),
            c.total_segments,
            c.allocs_from_bump,
            c.allocs_from_bitmap,
            c.total_frees
        );
    }
    println!(
        "  on disk              {:.1} MiB ({:.1} bytes per node; blocks in use {:.1} MiB, ratio {:.2})",
        mib(disk),
        disk as f64 / nodes as f64,
        mib(after.total.live_bytes),
        disk as f64 / after.total.live_bytes as f64
    );
    println!(
        "  footprint            {open_footprint}\n                       after the last commit, the store still open"
    );
    println!("  footprint            {}\n                       after close and reopen", footprint(&after));
    let per_node = |b: u64| b as f64 / nodes as f64;
    println!(
        "                       class files {:.1}, checkpoint {:.2}, log {:.1} bytes per node",
        per_node(after.data_file_bytes),
        per_node(after.checkpoint_bytes),
        per_node(after.log_bytes)
    );
    println!("  times                load {load_s:.2} s ({:.0} records/s), churn {churn_s:.2} s, reopen {reopen_s:.3} s, verify {verify_s:.2} s", records as f64 / load_s);
    println!(
        "  commit calls         {:.2} s: {:.2} s committing, {:.2} s in checkpoints ({} taken, {:.2} s of it flushing class files); close {close_s:.2} s",
        commit_s,
        commit_s - before.checkpoint_seconds,
        before.checkpoint_seconds,
        before.checkpoints,
        before.checkpoint_flush_seconds
    );
    println!(
        "  peak memory          {:.0} MiB (blocks in use {:.0} MiB, object table {:.0} MiB)",
        mib(peak_rss_bytes()),
        mib(after.total.live_bytes),
        mib(after.handles * 20)
    );
    println!("  open files           {} (store), whatever the node count", after.open_files);
    if bad > 0 {
        eprintln!("pcore demo: {bad} nodes did not read back exact after reopen");
        return Ok(Outcome::Failed);
    }
    println!(
        "\nverified: every node read back byte for byte after close and reopen; allocator matches the object table."
    );
    kizuna_workload(&work.path.join("kizuna"), rows)
}

/// The store's footprint ratio (its files over its nodes' live blocks) and its parts.
fn footprint(st: &pcore::StoreStats) -> String {
    format!(
        "{:.2}x ({:.1} MiB of files for {:.1} MiB of live blocks; free blocks {:.1} MiB (and {:.1} MiB given back to the file system), log {:.1} MiB, checkpoint {:.1} MiB)",
        st.footprint_ratio(),
        mib(st.directory_bytes),
        mib(st.live_bytes),
        mib(st.free_bytes),
        mib(st.given_back_bytes),
        mib(st.log_bytes),
        mib(st.checkpoint_bytes)
    )
}

/// The store's stats once its background thread has rested it (the last commit checkpointed,
/// the log and the free pages given back), or once it has nothing to give back, or after 10 s.
fn stats_at_rest(store: &Store) -> pcore::Result<(pcore::StoreStats, f64)> {
    let start = Instant::now();
    loop {
        let st = store.stats()?;
        let rested = st.log_bytes == 0 && st.checkpoint_epoch == st.epoch;
        if rested || st.footprint_ratio() <= 1.4 || start.elapsed() > std::time::Duration::from_secs(10) {
            return Ok((st, secs(start)));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Kizuna's shape: rows in random order, two unique indexes (INTEGER keys of 12 bytes and
/// `'key%06d'` keys of 17 bytes, as its record encoding makes them), 8-byte record ids, a
/// commit per 500-row batch; then close, reopen, find every key, verify both trees.
const KIZUNA_BATCH: u64 = 500;

/// How an index makes its key from a row number.
type KeyOf = fn(u64) -> Vec<u8>;

fn integer_key(row: u64) -> Vec<u8> {
    let mut k = b"\x01\x00\x00\x00\x01\x00\x00\x00".to_vec(); // 8-byte record header
    k.extend_from_slice(&((row as u32) ^ 0x8000_0000).to_be_bytes()); // sign-flipped, big-endian
    k
}

fn text_key(row: u64) -> Vec<u8> {
    let mut k = b"\x01\x00\x00\x00\x09\x00\x00\x00".to_vec();
    k.extend_from_slice(format!("key{row:06}").as_bytes());
    k
}

fn record_id(row: u64) -> [u8; 8] {
    ((row / 64 + 1) << 32 | (row % 64)).to_le_bytes()
}

fn kizuna_workload(dir: &std::path::Path, rows: u64) -> Result<Outcome, String> {
    let e = |e: pcore::Error| e.to_string();
    let opts = StoreOptions { durability: Durability::Balanced, ..StoreOptions::default() };
    let tree_opts = TreeOptions { duplicates: Duplicates::Unique, ..TreeOptions::default() };
    let indexes: [(&[u8], KeyOf); 2] = [(b"orders.id", integer_key), (b"orders.name", text_key)];
    // Rows in a fixed pseudo-random order.
    let mut order: Vec<u64> = (0..rows).collect();
    pcore::test_rng::TestRng::new(0x2545_F491_4F6C_DD1D).shuffle(&mut order);
    println!("\nKizuna workload: {rows} rows, two unique indexes, a commit per {KIZUNA_BATCH}-row batch");
    let t_load = Instant::now();
    let rest_wait: f64; // not load time
    {
        let store = Store::open(dir, &opts).map_err(e)?;
        let trees: Vec<BTree> = indexes
            .iter()
            .map(|(name, _)| BTree::open(&store, name, &tree_opts))
            .collect::<pcore::Result<_>>()
            .map_err(e)?;
        let bar = progress(rows, "Kizuna: insert rows");
        for (i, &row) in order.iter().enumerate() {
            if i % 1024 == 0 {
                bar.set_position(i as u64);
            }
            for (tree, (_, key_of)) in trees.iter().zip(&indexes) {
                tree.insert(&key_of(row), &record_id(row)).map_err(e)?;
            }
            if (i as u64 + 1).is_multiple_of(KIZUNA_BATCH) {
                store.commit().map_err(e)?;
            }
        }
        store.commit().map_err(e)?;
        bar.finish_and_clear();
        println!(
            "  footprint    {} after the last commit, the store still open",
            footprint(&store.stats().map_err(e)?)
        );
        let (rest, waited) = stats_at_rest(&store).map_err(e)?;
        rest_wait = waited;
        println!("  footprint    {} at rest, {waited:.1} s later", footprint(&rest));
        match trees[0].insert(&integer_key(7), b"dup") {
            Err(pcore::Error::DuplicateKey(_)) => {}
            other => return Err(format!("a duplicate key was not refused: {other:?}")),
        }
        store.close().map_err(e)?;
    }
    let load_s = secs(t_load) - rest_wait;
    let store = Store::open(dir, &opts).map_err(e)?;
    let t_lookup = Instant::now();
    let mut missing = 0u64;
    for (name, key_of) in indexes {
        let tree = BTree::open(&store, name, &tree_opts).map_err(e)?;
        missing += (0..rows)
            .filter(|&row| tree.get(&key_of(row)).ok().flatten().as_deref() != Some(&record_id(row)[..]))
            .count() as u64;
        tree.verify().map_err(|err| format!("{}: {err}", String::from_utf8_lossy(name)))?;
        let st = tree.stats().map_err(e)?;
        println!(
            "  {:<12} {} keys, height {}, pages per level {:?}, keys per leaf {}..{} (avg {:.1}), leaf fill {:.1} %, {:.1} bytes per entry",
            String::from_utf8_lossy(name),
            st.entries,
            st.height,
            st.pages_per_level,
            st.keys_per_leaf_min,
            st.keys_per_leaf_max,
            st.keys_per_leaf_avg,
            100.0 * st.leaf_fill,
            st.bytes_per_entry
        );
    }
    let lookup_us = secs(t_lookup) * 1e6 / (2 * rows) as f64;
    println!("  footprint    {} after close and reopen", footprint(&store.stats().map_err(e)?));
    println!(
        "  times        load and commit {load_s:.2} s ({} inserts), lookup {lookup_us:.2} us per key after reopen",
        2 * rows
    );
    if missing > 0 {
        eprintln!("pcore demo: {missing} keys missing or wrong after reopen");
        return Ok(Outcome::Failed);
    }
    println!(
        "\nverified: every key found with its record id after reopen; both trees pass verify; a duplicate was refused."
    );
    Ok(Outcome::Done)
}
