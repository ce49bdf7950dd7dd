//! Delta log records (docs/LOG.md): a commit logs what changed, recovery rebuilds each version
//! from the one before it, and a base stays allocated until a checkpoint has flushed what
//! replaced it.

use super::tests::{damage_node_byte, reopen, strict, Rng, TempDir};
use super::*;
use std::collections::BTreeMap;

fn page(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed | 1);
    (0..len).map(|_| rng.next() as u8).collect()
}

#[test]
fn a_small_change_to_a_page_logs_a_small_record_and_recovers_exactly() {
    let dir = TempDir::new("delta-small");
    let s = reopen(dir.path(), &strict());
    let id = s.allocate(4096, 1).unwrap().0;
    let mut bytes = page(3, 4096);
    s.publish(id, &bytes).unwrap();
    s.commit().unwrap();
    s.checkpoint().unwrap();
    for i in 0..20usize {
        bytes[100 + i * 150] ^= 0x5A;
        s.update(id, |b| {
            b[100 + i * 150] ^= 0x5A;
            4096
        })
        .unwrap();
        let before = s.stats().unwrap().log_bytes;
        s.commit().unwrap();
        let logged = s.stats().unwrap().log_bytes - before;
        assert!(logged < 100, "a one-byte change logged {logged} bytes");
    }
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert!(s.recovery_note().unwrap().contains("20 commits replayed"), "{:?}", s.recovery_note());
    assert_eq!(s.read(id).unwrap(), bytes);
    s.verify().unwrap();
}

#[test]
fn a_delta_base_stays_allocated_until_the_next_checkpoint() {
    let dir = TempDir::new("delta-held");
    let s = reopen(dir.path(), &strict());
    let id = s.allocate(4096, 1).unwrap().0;
    s.publish(id, &page(5, 4096)).unwrap();
    s.commit().unwrap();
    s.checkpoint().unwrap();
    for round in 0..5u8 {
        s.update(id, |b| {
            b[7] = round;
            4096
        })
        .unwrap();
        s.commit().unwrap();
        // One base per node, however often it changes: later versions are in the log.
        let st = s.stats().unwrap();
        assert_eq!(st.held_base_bytes, 4096, "round {round}");
        assert_eq!(st.pending_free_bytes, 0, "STRICT: the replaced logged versions are reusable");
        s.verify().unwrap();
    }
    s.checkpoint().unwrap();
    assert_eq!(s.stats().unwrap().held_base_bytes, 0);
    s.verify().unwrap();
}

/// A node's logged version lies in block W; the node moves on and W, free again, takes a
/// payload too large to log (synced at its commit, never in the log). Replay must not lay the
/// old logged version over it.
#[test]
fn an_unlogged_payload_in_a_block_that_held_a_logged_version_survives_recovery() {
    let dir = TempDir::new("delta-unlogged-reuse");
    let opts = StoreOptions { inline_payload_max_bytes: 100, ..strict() };
    let s = reopen(dir.path(), &opts);
    let a = s.allocate(128, 1).unwrap().0;
    s.publish(a, &[1; 60]).unwrap();
    s.commit().unwrap();
    let w = s.read_addr(a).unwrap().0;
    s.publish(a, &[2; 60]).unwrap();
    s.commit().unwrap(); // W is reusable now: the version in it is in the log
    let b = s.allocate(128, 1).unwrap().0;
    assert_eq!(s.read_addr(b).unwrap().0, w, "the allocator reuses the block just freed");
    let big = page(9, 120);
    s.publish(b, &big).unwrap();
    s.commit().unwrap();
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..opts });
    assert_eq!(s.read(b).unwrap(), big);
    assert_eq!(s.read(a).unwrap(), [2; 60]);
}

/// Random changes to pages (bytes, inserts that shift, growth, shrinking, frees, new nodes,
/// payloads too large to log), a crash after every few commits: the store equals the model.
#[test]
fn chains_of_deltas_replay_exactly_across_crashes_and_checkpoints() {
    let dir = TempDir::new("delta-chains");
    let opts = StoreOptions {
        inline_payload_max_bytes: 3000,
        checkpoint_log_bytes: 48 << 10,
        verify_checksums: true,
        ..strict()
    };
    let mut rng = Rng::new(0xD17A);
    let mut model: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
    for round in 0..12 {
        let s = reopen(dir.path(), &opts);
        for (id, bytes) in &model {
            assert_eq!(&s.read(*id).unwrap(), bytes, "round {round}, node {id}");
        }
        s.verify().unwrap();
        for _ in 0..1 + rng.below(15) {
            for _ in 0..1 + rng.below(12) {
                let ids: Vec<NodeId> = model.keys().copied().collect();
                let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize];
                match rng.below(10) {
                    _ if ids.is_empty() => {}
                    0..=4 => {
                        let id = pick(&mut rng);
                        let mut bytes = model[&id].clone();
                        let at = rng.below(bytes.len() as u64 + 1) as usize;
                        let insert = page(rng.next(), 1 + rng.below(40) as usize);
                        bytes.splice(at..at, insert);
                        if rng.below(3) == 0 {
                            bytes.truncate(rng.below(bytes.len() as u64 + 1) as usize);
                        }
                        let new_id = s.publish(id, &bytes).unwrap();
                        model.remove(&id);
                        model.insert(new_id, bytes);
                    }
                    5 => {
                        let id = pick(&mut rng);
                        let len = model[&id].len();
                        let at = rng.below(len.max(1) as u64) as usize;
                        if len > 0 {
                            s.update(id, |b| {
                                b[at] ^= 0xFF;
                                len
                            })
                            .unwrap();
                            model.get_mut(&id).unwrap()[at] ^= 0xFF;
                        }
                    }
                    6 => {
                        let id = pick(&mut rng);
                        s.free(id).unwrap();
                        model.remove(&id);
                    }
                    _ => {}
                }
                if rng.below(3) == 0 {
                    let len = [50, 700, 2000, 5000][rng.below(4) as usize];
                    let bytes = page(rng.next(), len);
                    let id = s.allocate(len, 1).unwrap().0;
                    s.publish(id, &bytes).unwrap();
                    model.insert(id, bytes);
                }
            }
            s.commit().unwrap();
        }
        if rng.below(4) == 0 {
            s.close().unwrap();
        } else {
            s.simulate_crash();
        }
    }
}

/// Closing a store with nothing committed since its last checkpoint writes nothing.
#[test]
fn closing_an_unchanged_store_writes_no_checkpoint() {
    let dir = TempDir::new("close-unchanged");
    let s = reopen(dir.path(), &strict());
    let id = s.allocate(100, 1).unwrap().0;
    s.publish(id, &[4; 100]).unwrap();
    s.commit().unwrap();
    s.close().unwrap();
    let listing = |d: &std::path::Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap())
            // Class files take uncommitted writes (shadow blocks) whatever close does.
            .filter(|e| !e.file_name().to_string_lossy().starts_with("class-"))
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let before = listing(dir.path());
    let s = reopen(dir.path(), &strict());
    assert_eq!(s.read(id).unwrap(), [4; 100]);
    s.publish(id, &[5; 100]).unwrap(); // uncommitted: dropped at close, nothing to write
    s.close().unwrap();
    assert!(listing(dir.path()) == before, "closing an unchanged store changed its meta, checkpoint or log");
    let s = reopen(dir.path(), &strict());
    assert_eq!(s.read(id).unwrap(), [4; 100]);
    s.commit().unwrap(); // an empty commit is a commit: the next close checkpoints it
    s.close().unwrap();
    assert!(listing(dir.path()) != before);
}

/// Payloads too large to log are synced at commit: one sync per class file, not one per node.
#[test]
fn a_commit_of_many_large_payloads_syncs_each_class_file_once() {
    let dir = TempDir::new("large-sync");
    let s = reopen(dir.path(), &strict());
    let mut model = Vec::new();
    for i in 0..40u64 {
        let len = if i % 2 == 0 { 16 << 10 } else { 12 << 10 }; // both in the 16 KiB class
        let bytes = page(i + 100, len);
        let id = s.allocate(len, 1).unwrap().0;
        s.publish(id, &bytes).unwrap();
        model.push((id, bytes));
    }
    let before = crate::alloc::SYNC_CALLS.with(|c| c.get());
    s.commit().unwrap();
    let syncs = crate::alloc::SYNC_CALLS.with(|c| c.get()) - before;
    assert!(syncs <= 2, "{syncs} class file syncs for a commit of 40 large nodes in one class");
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    for (id, bytes) in &model {
        assert_eq!(&s.read(*id).unwrap(), bytes);
    }
}

/// A STRICT commit of new nodes adding up to a bulk (issue 17 item 3) syncs them in their
/// blocks, as a large payload is, rather than logging them: the log holds their PUT headers
/// only. A kill after the commit loses none of them.
#[test]
fn a_bulk_of_new_nodes_is_synced_in_its_blocks_not_logged() {
    let dir = TempDir::new("delta-bulk");
    let s = reopen(dir.path(), &strict());
    let ids: Vec<NodeId> = (0..300u64)
        .map(|i| {
            let id = s.allocate(4096, 1).unwrap().0;
            s.publish(id, &page(i, 4096)).unwrap();
            id
        })
        .collect();
    let before = s.stats().unwrap().log_bytes;
    s.commit().unwrap();
    let logged = s.stats().unwrap().log_bytes - before;
    assert!(logged < 300 * 64, "a bulk of 1.2 MB of new nodes logged {logged} bytes");
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    for (i, &id) in ids.iter().enumerate() {
        assert_eq!(s.read(id).unwrap(), page(i as u64, 4096), "node {i}");
    }
    s.verify().unwrap();
}

/// A node synced in its block at its commit (a bulk's) is a delta's base like a checkpointed
/// one: the next change logs what changed, and the base stays allocated until a checkpoint.
/// Blocks freed meanwhile are reused by new nodes; a kill then loses nothing.
#[test]
fn a_change_to_a_node_synced_at_its_commit_logs_a_delta_and_recovers_exactly() {
    let dir = TempDir::new("delta-after-bulk");
    let s = reopen(dir.path(), &strict());
    let mut model: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
    for i in 0..300u64 {
        let id = s.allocate(4096, 1).unwrap().0;
        s.publish(id, &page(i, 4096)).unwrap();
        model.insert(id, page(i, 4096));
    }
    s.commit().unwrap();
    for round in 0..3u8 {
        for (k, (&id, bytes)) in model.iter_mut().enumerate() {
            let at = (k * 13 + usize::from(round) * 101) % 4096;
            bytes[at] ^= 0xA5;
            s.update(id, |b| {
                b[at] ^= 0xA5;
                4096
            })
            .unwrap();
        }
        let before = s.stats().unwrap().log_bytes;
        s.commit().unwrap();
        let logged = s.stats().unwrap().log_bytes - before;
        assert!(logged < 300 * 100, "round {round}: one byte in each of 300 nodes logged {logged} bytes");
        assert_eq!(s.stats().unwrap().held_base_bytes, 300 * 4096, "round {round}: one base per node");
        // New small nodes, which may take blocks freed by this round's commit.
        let id = s.allocate(4096, 1).unwrap().0;
        s.publish(id, &page(1000 + u64::from(round), 4096)).unwrap();
        s.commit().unwrap();
        model.insert(id, page(1000 + u64::from(round), 4096));
    }
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    for (&id, bytes) in &model {
        assert_eq!(&s.read(id).unwrap(), bytes, "node {id}");
    }
    s.verify().unwrap();
    s.checkpoint().unwrap();
    assert_eq!(s.stats().unwrap().held_base_bytes, 0);
}

/// A node changed some way no script records, logged as a delta against a base damaged in its
/// block: its new CRC comes from the base's committed CRC over the ranges the delta writes,
/// so the damage it carried over is reported, not sealed under a CRC of the damaged bytes (an
/// outside tester's remove of an entry in a damaged leaf sealed it).
#[test]
fn a_delta_over_a_damaged_base_keeps_the_damage_reported() {
    let dir = TempDir::new("delta-damaged-base");
    let s = reopen(dir.path(), &strict());
    let id = s.allocate(4096, 1).unwrap().0;
    let bytes = page(5, 4096);
    s.publish(id, &bytes).unwrap();
    s.commit().unwrap();
    s.checkpoint().unwrap();
    damage_node_byte(&s, dir.path(), id, 3000);
    // The host reads the node (no checksums verified), changes a little, publishes it back.
    let mut read = s.read(id).unwrap();
    read[100..110].fill(7);
    s.publish(id, &read).unwrap();
    s.commit().unwrap();
    let found = s.check_checksums(10).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].to_string().contains(&format!("node {id}:")), "{found:?}");
    s.simulate_crash();
    let r = reopen(dir.path(), &strict());
    assert_eq!(r.check_checksums(10).unwrap().len(), 1, "still reported after recovery");
}
