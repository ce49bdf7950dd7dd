//! Edit scripts in the log (store format 8): a node changed only through recorded edits is
//! logged as its script, replayed over its committed version at recovery; any other change
//! ends the script and the node is logged as before.

use super::tests::{damage_node_byte, reopen, strict, Rng, TempDir};
use super::*;
use crate::btree::{BTree, TreeOptions};

fn random_page(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed | 1);
    (0..4096).map(|_| rng.next() as u8).collect()
}

/// A committed, checkpointed node of random bytes.
fn committed_node(s: &Store, seed: u64) -> (NodeId, Vec<u8>) {
    let id = s.allocate(4096, 1).unwrap().0;
    let bytes = random_page(seed);
    s.publish(id, &bytes).unwrap();
    s.commit().unwrap();
    s.checkpoint().unwrap();
    (id, bytes)
}

/// A slotted-page insert as the B+ tree makes it: a cell written low, the slots after it
/// moved up two bytes, the new slot and a header field written.
fn insert_like<P: PageBytes + ?Sized>(page: &mut P, round: usize) {
    let (cell_at, slot_at) = (3000 - round * 27, 16 + 2 * round);
    page.write_with(cell_at, 27, |b| b.fill(round as u8 ^ 0xA5));
    page.move_bytes(slot_at..400, slot_at + 2);
    page.write_with(slot_at, 2, |b| b.copy_from_slice(&(cell_at as u16).to_le_bytes()));
    page.write_with(2, 6, |b| b.copy_from_slice(&[round as u8, 0, 1, 2, 3, 4]));
}

/// `insert_like` on node `id` through a recording edit, and on `model`.
fn recorded_insert(s: &Store, id: NodeId, model: &mut [u8], round: usize) {
    insert_like(model, round);
    s.with_editor(|e| {
        e.update_recorded(id, |edit| {
            insert_like(edit, round);
            Ok((4096, ()))
        })
    })
    .unwrap();
}

#[test]
fn recorded_edits_are_logged_as_their_script_and_recover_exactly() {
    let dir = TempDir::new("script-recover");
    let s = reopen(dir.path(), &strict());
    let (id, mut model) = committed_node(&s, 3);
    for round in 0..20 {
        recorded_insert(&s, id, &mut model, round);
        if round % 2 == 1 {
            recorded_insert(&s, id, &mut model, round + 50);
        }
        let before = s.stats().unwrap().log_bytes;
        s.commit().unwrap();
        let logged = s.stats().unwrap().log_bytes - before;
        assert!(logged < 200, "round {round}: {logged} bytes logged");
    }
    assert_eq!(s.read(id).unwrap(), model);
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert!(s.recovery_note().unwrap().contains("20 commits replayed"), "{:?}", s.recovery_note());
    assert_eq!(s.read(id).unwrap(), model);
    s.verify().unwrap();
}

#[test]
fn a_recorded_write_is_logged_as_written_not_searched() {
    // Bytes written over themselves differ from nothing: a delta of them is empty, the
    // script holds them. That tells the script's record from a delta's.
    let dir = TempDir::new("script-as-written");
    let s = reopen(dir.path(), &strict());
    let (id, model) = committed_node(&s, 5);
    let before = s.stats().unwrap().log_bytes;
    s.with_editor(|e| e.update_recorded(id, |edit| Ok((4096, edit.write_with(100, 300, |_| ()))))).unwrap();
    s.commit().unwrap();
    assert!(s.stats().unwrap().log_bytes - before >= 300, "the 300 bytes written are in the script");
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert_eq!(s.read(id).unwrap(), model);
}

#[test]
fn a_change_the_script_does_not_record_ends_it_until_the_commit() {
    let dir = TempDir::new("script-ended");
    let s = reopen(dir.path(), &strict());
    let (id, mut model) = committed_node(&s, 7);
    let (other, mut other_model) = committed_node(&s, 9);
    // Recorded, then changed in place unrecorded, then recorded again: the node's log record
    // must hold all three (a script of the last edits alone would rebuild the wrong bytes).
    recorded_insert(&s, id, &mut model, 1);
    s.update(id, |b| {
        b[1000] ^= 0xFF;
        4096
    })
    .unwrap();
    model[1000] ^= 0xFF;
    recorded_insert(&s, id, &mut model, 2);
    // Recorded, then published whole.
    recorded_insert(&s, other, &mut other_model, 1);
    other_model = random_page(11);
    s.publish(other, &other_model).unwrap();
    recorded_insert(&s, other, &mut other_model, 3);
    s.commit().unwrap();
    // The next commit's recording starts afresh from the version just committed.
    recorded_insert(&s, id, &mut model, 4);
    s.commit().unwrap();
    // An aborted recording leaves nothing behind for the next.
    recorded_insert(&s, id, &mut model.clone(), 5);
    s.abort().unwrap();
    recorded_insert(&s, id, &mut model, 6);
    s.commit().unwrap();
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert_eq!(s.read(id).unwrap(), model);
    assert_eq!(s.read(other).unwrap(), other_model);
    s.verify().unwrap();
}

#[test]
fn a_script_grown_past_half_its_node_gives_way_to_a_delta() {
    let dir = TempDir::new("script-long");
    let s = reopen(dir.path(), &strict());
    let (id, mut model) = committed_node(&s, 13);
    // 80 inserts of a 27-byte cell: ~50 bytes of script each, past 2 KiB.
    for round in 0..80 {
        recorded_insert(&s, id, &mut model, round);
    }
    s.commit().unwrap();
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    assert_eq!(s.read(id).unwrap(), model);
}

#[test]
fn tree_inserts_into_committed_leaves_log_small_records_and_survive_a_crash() {
    let dir = TempDir::new("script-tree");
    let s = reopen(dir.path(), &strict());
    let tree = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    let key = |i: u64| (i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_be_bytes();
    for i in 0..20_000u64 {
        tree.insert(&key(i), &i.to_le_bytes()).unwrap();
    }
    s.commit().unwrap();
    s.checkpoint().unwrap();
    // 100 statement-sized commits of 20 rows each into ~130 leaves: nearly every insert goes
    // into a committed leaf in place, logged as its script (~70 bytes with the PUT's header);
    // the rest is splits. A page image a row would be 4 KiB.
    let before = s.stats().unwrap().log_bytes;
    for c in 0..100u64 {
        for i in 0..20 {
            let k = 20_000 + c * 20 + i;
            tree.insert(&key(k), &k.to_le_bytes()).unwrap();
        }
        s.commit().unwrap();
    }
    let per_row = (s.stats().unwrap().log_bytes - before) / 2000;
    assert!(per_row < 200, "{per_row} bytes logged a row");
    drop(tree);
    s.simulate_crash();
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    let tree = BTree::open(&s, b"t", &TreeOptions::default()).unwrap();
    for i in 0..22_000u64 {
        assert_eq!(tree.get(&key(i)).unwrap().as_deref(), Some(&i.to_le_bytes()[..]), "key {i}");
    }
    s.verify().unwrap();
}

#[test]
fn a_format_7_store_is_read_and_converted_at_the_first_writable_open() {
    let dir = TempDir::new("script-v7");
    let s = reopen(dir.path(), &strict());
    let (id, mut model) = committed_node(&s, 17);
    s.close().unwrap();
    super::checkpoint_tests::set_meta_format(dir.path(), 7);
    let ro = reopen(dir.path(), &StoreOptions { read_only: true, ..strict() });
    assert_eq!(ro.read(id).unwrap(), model);
    drop(ro);
    assert_eq!(super::meta::Meta::load(dir.path()).unwrap().format, 7, "a reader converts nothing");
    let s = reopen(dir.path(), &strict());
    assert_eq!(super::meta::Meta::load(dir.path()).unwrap().format, super::meta::FORMAT_VERSION);
    recorded_insert(&s, id, &mut model, 1);
    s.commit().unwrap();
    s.simulate_crash();
    let s = reopen(dir.path(), &strict());
    assert_eq!(s.read(id).unwrap(), model);
}

/// A block damaged on disk, then edited, committed and crashed: recovery rebuilds the
/// version over the damaged bytes, which do not match the logged checksum. That node is
/// damaged, not the store: the open succeeds (an outside tester found every open, writable
/// or read-only, refused), the nodes of other checksum groups read, and the check names the
/// node.
#[test]
fn a_crash_after_editing_a_damaged_block_opens_and_names_the_node() {
    let dir = TempDir::new("script-damaged-crash");
    let s = reopen(dir.path(), &strict());
    let (id, mut model) = committed_node(&s, 9);
    // Checkpoints check groups of 8 handles (`seal.rs`): one damaged node makes its group's
    // other members suspect too. This one is in the next group.
    for _ in 0..8 {
        committed_node(&s, 1);
    }
    let (other, other_bytes) = committed_node(&s, 8);
    damage_node_byte(&s, dir.path(), id, 3500);
    recorded_insert(&s, id, &mut model, 0);
    s.commit().unwrap();
    s.simulate_crash();
    for read_only in [true, false] {
        let r = reopen(dir.path(), &StoreOptions { read_only, ..strict() });
        assert!(r.recovery_note().is_some_and(|n| n.contains("1 node version")), "{:?}", r.recovery_note());
        assert_eq!(r.read(other).unwrap(), other_bytes, "read_only {read_only}");
        let mut damaged = model.clone();
        damaged[3500] = !damaged[3500];
        assert_eq!(r.read(id).unwrap(), damaged, "the edit over the damaged bytes");
        // The node's bytes do not match its checksum; the rest of its group is suspect; no
        // node of another group is named.
        let found: Vec<String> = r.check_checksums(10).unwrap().iter().map(ToString::to_string).collect();
        let own = format!("node {id}:");
        assert!(found.iter().any(|e| e.contains(&own) && e.contains("do not match their checksum")), "{found:?}");
        assert!(found.iter().all(|e| e.contains("group of handles 0..8")), "{found:?}");
        let checked = reopen(dir.path(), &StoreOptions { read_only: true, verify_checksums: true, ..strict() });
        assert!(matches!(checked.read(id), Err(crate::Error::Corrupt { .. })));
        assert_eq!(checked.read(other).unwrap(), other_bytes);
    }
}

/// A node's CRC at a commit is updated from its committed CRC over the ranges its script
/// wrote (`crc_update.rs`). A committed block damaged on disk before the edit therefore
/// yields a new CRC its bytes do not match: the damage is reported, not sealed under a CRC
/// computed from the damaged bytes.
#[test]
fn a_block_damaged_before_a_recorded_edit_is_reported_not_sealed() {
    let dir = TempDir::new("script-damaged-base");
    let s = reopen(dir.path(), &strict());
    let (id, mut model) = committed_node(&s, 5);
    // Byte 3500 is outside every range `insert_like` writes.
    damage_node_byte(&s, dir.path(), id, 3500);
    recorded_insert(&s, id, &mut model, 0);
    s.commit().unwrap();
    let found = s.check_checksums(10).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(matches!(&found[0], crate::Error::Corrupt { what, .. } if what.contains(&id.to_string())), "{found:?}");
}

/// With checksums verified, an edit of a node whose committed bytes were damaged on disk
/// answers `Corrupt` and changes nothing, in the open that wrote the node too: an outside
/// tester's edit copied the damaged bytes into the next version, which then read back with
/// no error (the reads check committed versions; the edit had not).
#[test]
fn with_verified_checksums_an_edit_of_a_damaged_node_is_refused() {
    let dir = TempDir::new("script-verified-edit");
    let s = reopen(dir.path(), &StoreOptions { verify_checksums: true, ..strict() });
    let (id, mut model) = committed_node(&s, 10);
    let (clean, mut clean_model) = committed_node(&s, 11);
    damage_node_byte(&s, dir.path(), id, 3500);
    let edit = s.with_editor(|e| {
        e.update_recorded(id, |edit| {
            insert_like(edit, 0);
            Ok((4096, ()))
        })
    });
    assert!(matches!(edit, Err(crate::Error::Corrupt { .. })), "{edit:?}");
    assert!(matches!(s.read(id), Err(crate::Error::Corrupt { .. })), "still the damaged committed version");
    recorded_insert(&s, clean, &mut clean_model, 0);
    s.commit().unwrap();
    assert_eq!(s.read(clean).unwrap(), clean_model);
    model[3500] = !model[3500];
    let plain = reopen(dir.path(), &StoreOptions { read_only: true, ..strict() });
    assert_eq!(plain.read(id).unwrap(), model, "nothing of the refused edit was committed");
}
