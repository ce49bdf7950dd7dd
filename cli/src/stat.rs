//! `pcore stat DIR [--json]`: a store's figures, like mdb_stat. Read-only.

use crate::util::{dir_bytes, mib, names_live_node, open_existing, root_name};
use crate::Outcome;
use pcore::btree::{list_named_roots, list_trees, BTree, Duplicates, TreeDescription, TreeStats};
use pcore::store::MetaSlotState;
use serde_json::{json, Value};
use std::path::Path;

pub fn run(dir: &Path, as_json: bool) -> Result<Outcome, String> {
    let store = open_existing(dir, true)?;
    let files = crate::check::settled_files(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let stats = store.stats().map_err(|e| e.to_string())?;
    let trees: Vec<(TreeDescription, Option<TreeStats>)> = list_trees(&store)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|d| {
            // A tree ordered by its host's comparator can only be walked by its host.
            let st = BTree::open_existing(&store, &d.name).and_then(|t| t.stats()).ok();
            (d, st)
        })
        .collect();
    let roots: Vec<Value> = list_named_roots(&store)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(name, root)| {
            json!({"name": root_name(&name), "id": root.id, "meta_bytes": root.meta.len(),
                   "names_live_node": names_live_node(&store, root.id)})
        })
        .collect();
    let report = json!({
        "dir": dir.display().to_string(),
        "epoch": stats.epoch,
        "generation": files.generation,
        "meta_slots": files.meta_slots.iter().map(|(offset, s)| meta_slot_json(*offset, s)).collect::<Vec<_>>(),
        "checkpoint": files.checkpoint.as_ref().map(|c| json!({
            "file": c.file, "bytes": c.bytes, "pieces": c.pieces, "epoch": c.epoch, "handles": c.slots,
            "live_nodes": c.live_nodes, "roots": c.roots,
        })),
        "log": {
            "file": files.log.file, "bytes": files.log.bytes, "valid_bytes": files.log.valid_bytes,
            "torn_bytes": files.log.torn_bytes, "frames": files.log.frames, "last_epoch": files.log.last_epoch,
        },
        "object_table": {
            "handles": stats.handles, "live_nodes": stats.live_nodes,
        },
        "readers": {
            "read_only_opens": stats.reader_processes,
            "oldest_reader_epoch": stats.oldest_reader_epoch,
        },
        "footprint": {
            "ratio": stats.footprint_ratio(), "directory_bytes": stats.directory_bytes,
            "live_bytes": stats.live_bytes, "free_bytes": stats.free_bytes,
            "given_back_bytes": stats.given_back_bytes,
            "awaiting_durable_bytes": stats.pending_free_bytes - stats.pinned_bytes,
            "pinned_bytes": stats.pinned_bytes, "held_base_bytes": stats.held_base_bytes,
            "log_bytes": files.log.bytes, "checkpoint_bytes": stats.checkpoint_bytes,
        },
        "data_file_bytes": stats.data_file_bytes,
        "dir_bytes": dir_bytes(dir),
        "size_classes": stats.classes.iter().filter(|c| c.total_segments > 0).map(|c| json!({
            "block_bytes": c.class_bytes, "segments": c.total_segments, "active_segments": c.active_segments,
            "live_bytes": c.live_bytes, "dead_bytes": c.dead_bytes, "live_blocks": c.live_bytes / c.class_bytes,
            "free_blocks": c.dead_bytes / c.class_bytes, "fragmentation": c.fragmentation(),
        })).collect::<Vec<_>>(),
        "totals": {
            "live_bytes": stats.total.live_bytes, "dead_bytes": stats.total.dead_bytes,
            "segments": stats.total.total_segments, "fragmentation": stats.total.fragmentation(),
        },
        "trees": trees.iter().map(|(d, st)| tree_json(d, st.as_ref())).collect::<Vec<_>>(),
        "named_roots": roots,
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&report).expect("JSON of plain values"));
    } else {
        print_text(&report);
    }
    Ok(Outcome::Done)
}

fn meta_slot_json(offset: u64, s: &MetaSlotState) -> Value {
    match *s {
        MetaSlotState::Unused => json!({"offset": offset, "state": "unused"}),
        MetaSlotState::Damaged => json!({"offset": offset, "state": "damaged"}),
        MetaSlotState::Valid { sequence, generation, checkpoint_epoch } => json!({
            "offset": offset, "state": "valid", "sequence": sequence, "generation": generation,
            "checkpoint_epoch": checkpoint_epoch,
        }),
    }
}

pub fn duplicates_name(d: Duplicates) -> &'static str {
    match d {
        Duplicates::Unique => "unique",
        Duplicates::Overwrite => "overwrite",
        Duplicates::Multi => "multi",
    }
}

fn tree_json(d: &TreeDescription, st: Option<&TreeStats>) -> Value {
    let mut v = json!({
        "name": String::from_utf8_lossy(&d.name), "page_bytes": d.page_bytes,
        "duplicates": duplicates_name(d.duplicates), "custom_order": d.custom_order,
        "height": d.height, "entries": d.entries,
    });
    if let Some(st) = st {
        v["pages_per_level"] = json!(st.pages_per_level);
        v["leaf_pages"] = json!(st.leaf_pages);
        v["keys_per_leaf"] =
            json!({"min": st.keys_per_leaf_min, "avg": st.keys_per_leaf_avg, "max": st.keys_per_leaf_max});
        v["leaf_fill"] = json!(st.leaf_fill);
        v["bytes_per_entry"] = json!(st.bytes_per_entry);
        v["overflow_values"] = json!(st.overflow_values);
    }
    v
}

fn print_text(r: &Value) {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    println!("store {}", r["dir"].as_str().unwrap_or(""));
    println!("  epoch            {} (generation {})", r["epoch"], r["generation"]);
    for s in r["meta_slots"].as_array().into_iter().flatten() {
        match s["state"].as_str() {
            Some("valid") => println!(
                "  meta slot @{:<5}  sequence {}, generation {}, checkpoint epoch {}",
                u(&s["offset"]),
                s["sequence"],
                s["generation"],
                s["checkpoint_epoch"]
            ),
            other => println!("  meta slot @{:<5}  {}", u(&s["offset"]), other.unwrap_or("?")),
        }
    }
    match r["checkpoint"].as_object() {
        Some(c) => println!(
            "  checkpoint       {}: epoch {}, {:.1} KiB, {} handles, {} live nodes, {} roots",
            c["file"].as_str().unwrap_or(""),
            c["epoch"],
            u(&c["bytes"]) as f64 / 1024.0,
            c["handles"],
            c["live_nodes"],
            c["roots"]
        ),
        None => println!("  checkpoint       none yet"),
    }
    let log = &r["log"];
    println!(
        "  log              {}: {:.1} KiB, {} frames after the checkpoint, last epoch {}{}",
        log["file"].as_str().unwrap_or(""),
        u(&log["bytes"]) as f64 / 1024.0,
        log["frames"],
        log["last_epoch"],
        // Past the frames and any torn tail: an earlier generation's frames, reused space.
        match (u(&log["torn_bytes"]), u(&log["bytes"]) - u(&log["valid_bytes"])) {
            (0, 0) => String::new(),
            (0, stale) => format!(" ({stale} bytes of reused space after them)"),
            (torn, _) => format!(" ({torn} bytes of torn tail)"),
        }
    );
    let t = &r["object_table"];
    println!("  object table     {} handles, {} live nodes", t["handles"], t["live_nodes"]);
    let readers = &r["readers"];
    match readers["oldest_reader_epoch"].as_u64() {
        Some(oldest) => println!(
            "  readers          {} other read-only opens; the oldest reads epoch {oldest}: blocks freed since are \
             kept for it",
            readers["read_only_opens"]
        ),
        None => println!("  readers          no other read-only open"),
    }
    println!(
        "  on disk          {:.1} MiB in all, {:.1} MiB of class files",
        mib(u(&r["dir_bytes"])),
        mib(u(&r["data_file_bytes"]))
    );
    let f = &r["footprint"];
    println!(
        "  footprint        {:.2}x: {:.1} MiB of files for {:.1} MiB of live blocks; the rest is free blocks {:.1}, \
         awaiting a durable commit {:.1}, pinned by snapshots or readers {:.1}, delta bases {:.1}, log {:.1}, \
         checkpoint {:.1} MiB (free blocks given back to the file system: {:.1} MiB)",
        f["ratio"].as_f64().unwrap_or(0.0),
        mib(u(&f["directory_bytes"])),
        mib(u(&f["live_bytes"])),
        mib(u(&f["free_bytes"])),
        mib(u(&f["awaiting_durable_bytes"])),
        mib(u(&f["pinned_bytes"])),
        mib(u(&f["held_base_bytes"])),
        mib(u(&f["log_bytes"])),
        mib(u(&f["checkpoint_bytes"])),
        mib(u(&f["given_back_bytes"]))
    );
    println!("  size classes:");
    println!(
        "    {:>8} {:>9} {:>7} {:>12} {:>12} {:>10} {:>10} {:>7}",
        "block B", "segments", "active", "live blocks", "free blocks", "live MiB", "dead MiB", "frag %"
    );
    for c in r["size_classes"].as_array().into_iter().flatten() {
        println!(
            "    {:>8} {:>9} {:>7} {:>12} {:>12} {:>10.2} {:>10.2} {:>7.1}",
            u(&c["block_bytes"]),
            u(&c["segments"]),
            u(&c["active_segments"]),
            u(&c["live_blocks"]),
            u(&c["free_blocks"]),
            mib(u(&c["live_bytes"])),
            mib(u(&c["dead_bytes"])),
            100.0 * c["fragmentation"].as_f64().unwrap_or(0.0)
        );
    }
    let tot = &r["totals"];
    println!(
        "    total: {:.1} MiB live, {:.1} MiB in free blocks ready for reuse, fragmentation {:.1} %",
        mib(u(&tot["live_bytes"])),
        mib(u(&tot["dead_bytes"])),
        100.0 * tot["fragmentation"].as_f64().unwrap_or(0.0)
    );
    let trees = r["trees"].as_array().cloned().unwrap_or_default();
    println!("  B+ trees: {}", trees.len());
    for t in &trees {
        print!(
            "    {:<20} {} entries, {} duplicates, {}-byte pages, height {}",
            t["name"].as_str().unwrap_or(""),
            t["entries"],
            t["duplicates"].as_str().unwrap_or(""),
            t["page_bytes"],
            t["height"]
        );
        if t.get("leaf_fill").is_some() {
            let k = &t["keys_per_leaf"];
            println!(
                ", pages per level {}, keys per leaf {}..{} (avg {:.1}), leaf fill {:.1} %, {:.1} bytes per entry",
                t["pages_per_level"],
                k["min"],
                k["max"],
                k["avg"].as_f64().unwrap_or(0.0),
                100.0 * t["leaf_fill"].as_f64().unwrap_or(0.0),
                t["bytes_per_entry"].as_f64().unwrap_or(0.0)
            );
        } else {
            println!(" (ordered by its host's comparator: pages not walked)");
        }
    }
    let roots = r["named_roots"].as_array().cloned().unwrap_or_default();
    println!("  named roots: {}", roots.len());
    for root in &roots {
        println!(
            "    {:<20} node {:#x}{}, {} bytes of metadata",
            root["name"].as_str().unwrap_or(""),
            u(&root["id"]),
            if root["names_live_node"].as_bool() == Some(true) { " (live)" } else { " (not a live node id)" },
            root["meta_bytes"]
        );
    }
}
