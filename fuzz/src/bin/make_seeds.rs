//! Writes seed inputs for `page_decode` and `open_dir` from real pages and real store
//! directories: `cargo run --release --bin make_seeds -- corpus-raw` (then `cargo fuzz cmin`).

use pcore::btree::{BTree, TreeOptions};
use pcore::{Store, StoreOptions};
use pcore_fuzz::{dir, page};
use std::path::Path;

fn write(out: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = out.join(target);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join(name), bytes).unwrap();
}

/// Records describing every file of a store directory; class files as their non-zero runs.
fn records_of(path: &Path) -> Vec<u8> {
    let mut files: Vec<_> = std::fs::read_dir(path).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let contents: Vec<(String, Vec<u8>)> = files
        .iter()
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(p).unwrap()))
        .collect();
    let mut records = Vec::new();
    for (name, bytes) in &contents {
        if name == "meta" {
            // The two slots are 4 KiB apart; only their first 52 bytes matter.
            let end = bytes.len().min(4096 + 64);
            records.push(dir::Record::FixChecksums);
            records.push(dir::Record::Meta(&bytes[..end]));
        } else if let Some(g) = name.strip_prefix("wal-").and_then(|s| s.strip_suffix(".log")) {
            records.push(dir::Record::FixChecksums);
            records.push(dir::Record::Log(g.parse().unwrap(), bytes));
        } else if let Some(g) = name.strip_prefix("checkpoint-").and_then(|s| s.strip_suffix(".ckpt")) {
            records.push(dir::Record::FixChecksums);
            records.push(dir::Record::Checkpoint(g.parse().unwrap(), bytes));
        } else if let Some(rest) = name.strip_prefix("class-") {
            let class: u8 = rest[..2].parse().unwrap();
            let file_len = bytes.len() as u32;
            let mut i = 0;
            let mut any = false;
            while i < bytes.len() {
                if bytes[i] == 0 {
                    i += 1;
                    continue;
                }
                let start = i;
                let mut zeros = 0;
                while i < bytes.len() && i - start < 60_000 && zeros < 64 {
                    zeros = if bytes[i] == 0 { zeros + 1 } else { 0 };
                    i += 1;
                }
                let end = i - zeros;
                records.push(dir::Record::Class { class, file_len, offset: start as u32, bytes: &bytes[start..end] });
                any = true;
            }
            if !any {
                records.push(dir::Record::Class { class, file_len, offset: 0, bytes: &[] });
            }
        }
    }
    dir::encode(&records)
}

fn main() {
    let out = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "corpus-raw".into()));

    // page_decode: every page of small trees, decoded alone and planted back.
    for selector in [0u8, 1, 2, 4, 5, 6] {
        let (store, _tree) = page::build_tree(selector);
        for (n, id) in page::pages(&store).into_iter().enumerate() {
            let bytes = store.read(id).unwrap();
            let probe = page::key(n * 3);
            write(&out, "page_decode", &format!("decode-{selector}-{n}"), &page::encode(0, &probe, &bytes));
            let plant = page::SELECTOR_PLANT | selector | ((n as u8 & 0xF) << 3);
            write(&out, "page_decode", &format!("plant-{selector}-{n}"), &page::encode(plant, &probe, &bytes));
        }
    }

    // open_dir: real directories.
    let scratch = dir::scratch_dir("seeds");
    let fresh = |tag: &str| {
        let d = scratch.join(tag);
        let _ = std::fs::remove_dir_all(&d);
        d
    };
    let opts = StoreOptions { durability: pcore::Durability::Eventual, ..StoreOptions::default() };
    let fill = |s: &Store, n: usize| {
        let mut ids = Vec::new();
        for i in 0..n {
            let (id, _, _) = s.allocate(40 + i * 37 % 900, 1 + (i % 5) as u8).unwrap();
            s.publish(id, &vec![i as u8 + 1; 30 + i * 53 % 1500]).unwrap();
            ids.push(id);
        }
        s.set_root(b"main", ids[0].raw(), b"meta").unwrap();
        ids
    };
    // 1. A new, empty store.
    let d = fresh("empty");
    Store::open(&d, &opts).unwrap().close().unwrap();
    write(&out, "open_dir", "empty", &records_of(&d));
    // 2. Commits in the log only (a crash before any checkpoint).
    let d = fresh("log");
    let s = Store::open(&d, &opts).unwrap();
    let ids = fill(&s, 12);
    s.commit().unwrap();
    s.free(ids[3]).unwrap();
    s.publish(ids[4], &[9u8; 20_000]).unwrap();
    s.commit().unwrap();
    s.simulate_crash();
    write(&out, "open_dir", "log-only", &records_of(&d));
    // 3. A checkpoint, then more log.
    let d = fresh("ckpt");
    let s = Store::open(&d, &opts).unwrap();
    let ids = fill(&s, 20);
    s.commit().unwrap();
    s.checkpoint().unwrap();
    s.free(ids[1]).unwrap();
    s.publish(ids[2], b"after the checkpoint").unwrap();
    s.commit().unwrap();
    s.simulate_crash();
    write(&out, "open_dir", "checkpoint-and-log", &records_of(&d));
    // 4. A B+ tree, closed cleanly (checkpoint only) and crashed (log).
    for (tag, crash) in [("tree-closed", false), ("tree-log", true)] {
        let d = fresh(tag);
        let s = Store::open(&d, &opts).unwrap();
        let t = BTree::open(&s, b"t", &TreeOptions { page_bytes: 512, ..TreeOptions::default() }).unwrap();
        for i in 0..page::KEYS {
            t.insert(&page::key(i), &page::value(i)).unwrap();
        }
        s.commit().unwrap();
        drop(t);
        if crash {
            s.simulate_crash();
        } else {
            s.close().unwrap();
        }
        write(&out, "open_dir", tag, &records_of(&d));
    }
    let _ = std::fs::remove_dir_all(&scratch);
    println!("seeds written under {}", out.display());
}
