//! The page layout's unit tests.

use super::*;

fn leaf<'a>(k: &'a [u8], v: &'a [u8]) -> Entry<'a> {
    Entry { key: k, payload: Payload::Leaf(Value::Inline(v)) }
}

#[test]
fn varints_round_trip_and_are_sized_exactly() {
    for v in [0u64, 1, 127, 128, 16383, 16384, u32::MAX as u64, u64::MAX] {
        let mut buf = [0u8; 10];
        let n = put_varint(&mut buf, v);
        assert_eq!(n, varint_bytes(v), "{v}");
        assert_eq!(get_varint(&buf[..n]), Some((v, n)));
        assert_eq!(get_varint(&buf[..n - 1]), None);
    }
}

#[test]
fn a_seventeen_byte_key_and_eight_byte_value_take_twenty_nine_bytes() {
    let e = Entry { key: &[0u8; 17], payload: Payload::Leaf(Value::Inline(&[0u8; 8])) };
    assert_eq!(e.bytes(), 29);
    assert_eq!(capacity(4096) / 29, 140);
}

#[test]
fn build_then_read_back_every_kind_of_entry() {
    let mut page = vec![0u8; 512];
    let entries = [
        leaf(b"", b""),
        leaf(b"a", b"1"),
        Entry { key: b"big", payload: Payload::Leaf(Value::Overflow(0x1234_0001, 70000)) },
    ];
    build(&mut page, TYPE_LEAF, 0, &entries);
    let p = PageRef::parse(&page, 1).unwrap();
    assert_eq!(p.entries().unwrap(), entries);
    assert_eq!(p.used_bytes().unwrap(), entries.iter().map(Entry::bytes).sum::<usize>());
    assert_eq!(p.search(|k| k.cmp(b"a")).unwrap(), Ok(1));
    assert_eq!(p.search(|k| k.cmp(b"b")).unwrap(), Err(2));
}

#[test]
fn the_writer_fills_exactly_what_the_accounting_promises() {
    // Entries of mixed sizes, added until the accounting says the next would not fit:
    // the writer must accept all of them, and the page must then be full to the byte.
    let mut page = vec![0u8; 4096];
    let keys: Vec<Vec<u8>> = (0..400).map(|i| vec![b'k'; 1 + (i * 37) % 60]).collect();
    let mut entries = Vec::new();
    let mut total = 0;
    for k in &keys {
        let e = Entry { key: k, payload: Payload::Leaf(Value::Inline(b"12345678")) };
        if !fits(total + e.bytes(), 4096) {
            break;
        }
        total += e.bytes();
        entries.push(e);
    }
    build(&mut page, TYPE_LEAF, 0, &entries);
    let p = PageRef::parse(&page, 1).unwrap();
    assert_eq!(p.gap_bytes(), capacity(4096) - total);
    assert!(p.gap_bytes() < entries.last().unwrap().bytes() + 60);
}

#[test]
fn in_place_insert_keeps_order_and_refuses_when_full() {
    let mut page = vec![0u8; 256];
    build(&mut page, TYPE_LEAF, 0, &[leaf(b"a", b"1"), leaf(b"c", b"3")]);
    assert!(insert_in_place(&mut page[..], 1, 1, &leaf(b"b", b"2")).unwrap());
    let keys: Vec<&[u8]> = PageRef::parse(&page, 1).unwrap().entries().unwrap().iter().map(|e| e.key).collect();
    assert_eq!(keys, [b"a", b"b", b"c"]);
    let big_key = [b'z'; 230];
    let big = leaf(&big_key, b"");
    let before = page.clone();
    assert!(!insert_in_place(&mut page[..], 1, 3, &big).unwrap());
    assert_eq!(page, before);
}

#[test]
fn cells_carry_exactly_the_bytes_the_accounting_gives_their_entries() {
    let (long_key, long_value) = ([b'k'; 200], [b'v'; 300]);
    let entries = [
        leaf(b"", b""),
        leaf(b"a", b"1"),
        leaf(&long_key, b"x"),
        leaf(b"b", &long_value),
        Entry { key: b"big", payload: Payload::Leaf(Value::Overflow(0x1234_0001, 70000)) },
    ];
    let mut page = vec![0u8; 1024];
    build(&mut page, TYPE_LEAF, 0, &entries);
    let p = PageRef::parse(&page, 1).unwrap();
    let cells = p.cells().unwrap();
    for (i, (c, e)) in cells.iter().zip(&entries).enumerate() {
        assert_eq!((c.key(), c.bytes()), (e.key, e.bytes()));
        assert_eq!(Payload::Leaf(p.leaf_value(i).unwrap()), e.payload);
    }
    let mut copy = vec![0u8; 1024];
    build(&mut copy, TYPE_LEAF, 0, &cells);
    assert_eq!(PageRef::parse(&copy, 2).unwrap().entries().unwrap(), entries);
    let mut buf = Vec::new();
    assert_eq!(Cell::encode(&entries[3], &mut buf), cells[3]);
}

#[test]
fn a_separator_is_replaced_in_place_over_its_cell_or_in_the_gap_or_not_at_all() {
    let child = |k: &'static [u8], c: u64| Entry { key: k, payload: Payload::Child(c) };
    let mut page = vec![0u8; 128];
    build(&mut page, TYPE_INTERNAL, 7, &[child(b"ccc", 8), child(b"ggg", 9)]);
    // Shorter: over the old cell. Longer: in the gap. Either way the children stay.
    assert!(replace_separator_in_place(&mut page[..], 1, 0, b"b").unwrap());
    assert!(replace_separator_in_place(&mut page[..], 1, 1, b"ffffffff").unwrap());
    let p = PageRef::parse(&page, 1).unwrap();
    assert_eq!(p.entries().unwrap(), [child(b"b", 8), child(b"ffffffff", 9)]);
    assert_eq!(p.leftmost_child(), 7);
    // No room for a longer one: the page is left exactly as it was.
    let before = page.clone();
    assert!(!replace_separator_in_place(&mut page[..], 1, 0, &[b'x'; 100]).unwrap());
    assert_eq!(page, before);
}

/// Separators of 0 to 12 bytes from a small alphabet: many share their first eight bytes,
/// so searches meet ties of prefix words as well as differences.
fn separators(seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut rng = crate::test_rng::TestRng::new(seed | 1);
    let mut keys: Vec<Vec<u8>> = (0..n)
        .map(|_| {
            let x = rng.next();
            (0..(x % 13) as usize).map(|i| [0u8, 1, b'a', 0xff][(x >> (8 + 2 * i)) as usize & 3]).collect()
        })
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

#[test]
fn internal_slots_record_prefix_words_through_every_writer() {
    let keys = separators(0x9e37_79b9_7f4a_7c15, 40);
    fn child(k: &[u8], c: usize) -> Entry<'_> {
        Entry { key: k, payload: Payload::Child(100 + c as u64) }
    }
    let entries: Vec<Entry<'_>> = keys.iter().enumerate().map(|(i, k)| child(k, i)).collect();
    let mut page = vec![0u8; 4096];
    build(&mut page, TYPE_INTERNAL, 7, &entries[1..]);
    PageRef::parse(&page, 1).unwrap().check_words().unwrap();
    // An in-place insert shifts the slots, words with them; a replaced separator gets its
    // new word, over its old cell or in the gap.
    assert!(insert_in_place(&mut page[..], 1, 0, &entries[0]).unwrap());
    assert!(replace_separator_in_place(&mut page[..], 1, 3, &keys[3][..keys[3].len().min(1)]).unwrap());
    assert!(replace_separator_in_place(&mut page[..], 1, 5, &[&keys[5][..], &[0u8; 30]].concat()).unwrap());
    let p = PageRef::parse(&page, 1).unwrap();
    p.check_words().unwrap();
    assert_eq!(p.len(), entries.len());
    let shrunk = keys[3].len() - keys[3].len().min(1);
    assert_eq!(p.used_bytes().unwrap() + shrunk, entries.iter().map(Entry::bytes).sum::<usize>() + 30);
    // A leaf entry is refused by an internal page, and a child entry by a leaf.
    assert!(insert_in_place(&mut page[..], 1, 0, &leaf(b"x", b"y")).is_err());
    let mut leaf_page = vec![0u8; 512];
    build(&mut leaf_page, TYPE_LEAF, 0, &[leaf(b"a", b"1")]);
    assert!(insert_in_place(&mut leaf_page[..], 2, 0, &child(b"b", 0)).is_err());
    // A damaged word is caught by the check that verify makes.
    page[HEADER_BYTES + 2 * WORD_SLOT_BYTES + 4] ^= 0x10;
    assert!(matches!(PageRef::parse(&page, 1).unwrap().check_words(), Err(Error::Corrupt { .. })));
}

#[test]
fn the_word_searches_agree_with_the_key_order() {
    // Miri interprets some thousand times slower than native code.
    for seed in 1..if cfg!(miri) { 3 } else { 40u64 } {
        let keys = separators(seed.wrapping_mul(0x2545_f491_4f6c_dd1d), 60);
        let entries: Vec<Entry<'_>> =
            keys.iter().enumerate().map(|(i, k)| Entry { key: k, payload: Payload::Child(i as u64 + 1) }).collect();
        let leaves: Vec<Entry<'_>> = keys.iter().map(|k| leaf(k, b"v")).collect();
        // Small pages put short cells at the page's very end, where a word cannot be loaded.
        let (mut internal, mut leaf_page) = (vec![0u8; 2048], vec![0u8; 2048]);
        build(&mut internal, TYPE_INTERNAL, 99, &entries);
        build(&mut leaf_page, TYPE_LEAF, 0, &leaves);
        let (ip, lp) = (PageRef::parse(&internal, 1).unwrap(), PageRef::parse(&leaf_page, 2).unwrap());
        for probe in separators(seed ^ 0xabcdef, 80).iter().chain(&keys) {
            let word = prefix_word(probe);
            assert_eq!(ip.child_for_bytewise(word, probe).unwrap(), ip.child_for(|k| k.cmp(probe)).unwrap());
            assert_eq!(lp.search_bytewise(word, probe).unwrap(), lp.search(|k| k.cmp(probe)).unwrap());
            assert_eq!(lp.search_bytewise(word, probe).unwrap(), keys.binary_search(probe));
        }
    }
}

/// Damaged copies tried below; Miri interprets some thousand times slower than native code.
const DAMAGED_PAGES: usize = if cfg!(miri) { 400 } else { 20_000 };

#[test]
fn damaged_pages_are_corrupt_never_a_panic() {
    let mut page = vec![0u8; 512];
    build(&mut page, TYPE_LEAF, 0, &[leaf(b"key", b"value"), leaf(b"key2", b"v")]);
    let mut rng = crate::test_rng::TestRng::new(0x1234_5678_9abc_def1);
    for _ in 0..DAMAGED_PAGES {
        let x = rng.next();
        let mut bad = page.clone();
        bad[(x % 512) as usize] ^= 1 << (x >> 60 & 7);
        bad[((x >> 20) % 512) as usize] = (x >> 40) as u8;
        if let Ok(p) = PageRef::parse(&bad, 7) {
            let _ = p.entries();
            let _ = p.search(|k| k.cmp(b"key"));
        }
    }
    page[0] = 9;
    assert!(matches!(PageRef::parse(&page, 7), Err(Error::Corrupt { .. })));
}

#[test]
fn removing_in_place_keeps_the_leaf_packed_and_equal_to_a_rebuild() {
    let keys: Vec<Vec<u8>> = (0..30u8).map(|i| vec![b'k', i, i]).collect();
    let values: Vec<Vec<u8>> = (0..30usize).map(|i| vec![7u8; i % 9]).collect();
    let entries: Vec<Entry<'_>> = keys.iter().zip(&values).map(|(k, v)| leaf(k, v)).collect();
    for index in [0, 1, 14, 28, 29] {
        let mut page = vec![0u8; 1024];
        build(&mut page, TYPE_LEAF, 0, &entries);
        remove_in_place(&mut page, 1, index).unwrap();
        let mut rest = entries.clone();
        rest.remove(index);
        let p = PageRef::parse(&page, 1).unwrap();
        assert_eq!(p.entries().unwrap(), rest, "remove {index}");
        assert_eq!(p.occupied_bytes(), rest.iter().map(Entry::bytes).sum::<usize>(), "packed");
    }
    // A slot pointing into the removed cell: refused, the page untouched.
    let mut page = vec![0u8; 1024];
    build(&mut page, TYPE_LEAF, 0, &entries);
    let (s0, s1) = (page[16], page[17]);
    page[18] = s0;
    page[19] = s1;
    let before = page.clone();
    assert!(matches!(remove_in_place(&mut page, 1, 0), Err(Error::Corrupt { .. })));
    assert_eq!(page, before);
}

#[test]
fn removing_a_separator_in_place_equals_a_rebuild_even_over_holes() {
    let keys: Vec<Vec<u8>> = (0..30u8).map(|i| vec![b's', i, i % 7]).collect();
    let entries: Vec<Entry<'_>> =
        keys.iter().enumerate().map(|(i, k)| Entry { key: k, payload: Payload::Child(100 + i as u64) }).collect();
    for index in [0, 1, 14, 28, 29] {
        let mut page = vec![0u8; 1024];
        build(&mut page, TYPE_INTERNAL, 99, &entries);
        // A shorter separator written over entry 3's cell leaves a hole in the cell area.
        assert!(replace_separator_in_place(&mut page[..], 1, 3, &[b's', 3]).unwrap());
        let mut rest = entries.clone();
        rest[3].key = &[b's', 3];
        rest.remove(index);
        remove_in_place(&mut page, 1, index).unwrap();
        let p = PageRef::parse(&page, 1).unwrap();
        assert_eq!(p.entries().unwrap(), rest, "remove {index}");
        assert_eq!(p.leftmost_child(), 99);
        p.check_words().unwrap();
    }
}

/// The scan's quick decoding hands out exactly what the checked read gives, for every cell it
/// takes (one- and two-byte value lengths, empty keys and values), and declines the cells it
/// leaves to the checked read (long keys, overflow values) and damaged ones.
#[test]
fn the_quick_leaf_decoding_agrees_with_the_checked_read() {
    let long_key = vec![b'k'; 200];
    let (v63, v64, v900) = (vec![1u8; 63], vec![2u8; 64], vec![3u8; 900]);
    let entries = [
        leaf(b"", b""),
        leaf(b"a", &v63),
        leaf(b"b", &v64),
        leaf(b"c", &v900),
        Entry { key: b"d", payload: Payload::Leaf(Value::Overflow(0x1234_0001, 70000)) },
        leaf(&long_key, b"x"),
    ];
    let mut page = vec![0u8; 4096];
    build(&mut page, TYPE_LEAF, 0, &entries);
    let p = PageRef::parse(&page, 1).unwrap();
    for (i, e) in entries.iter().enumerate() {
        let quick = p.leaf_inline_quick(i).map(|(ka, kl, va, vl)| (&page[ka..ka + kl], &page[va..va + vl]));
        match (e.payload, e.key.len() < 128) {
            (Payload::Leaf(Value::Inline(v)), true) => assert_eq!(quick, Some((e.key, v)), "entry {i}"),
            _ => assert_eq!(quick, None, "entry {i}"),
        }
        assert_eq!(
            p.leaf_entry(i).unwrap(),
            (
                e.key,
                match e.payload {
                    Payload::Leaf(v) => v,
                    _ => unreachable!(),
                }
            )
        );
    }
    assert_eq!(p.leaf_inline_quick(entries.len()), None, "past the end");
    // A value length running past the page (the one cell lies at its end), and a slot
    // pointing below the cell area.
    let mut short = vec![0u8; 512];
    build(&mut short, TYPE_LEAF, 0, &[leaf(b"a", b"1")]);
    short[512 - 2] = 63 << 1;
    let p = PageRef::parse(&short, 1).unwrap();
    assert_eq!(p.leaf_inline_quick(0), None);
    assert!(p.leaf_entry(0).is_err());
    let mut below = page.clone();
    below[HEADER_BYTES..HEADER_BYTES + 2].copy_from_slice(&(HEADER_BYTES as u16).to_le_bytes());
    assert_eq!(PageRef::parse(&below, 1).unwrap().leaf_inline_quick(0), None);
    assert!(PageRef::parse(&below, 1).unwrap().leaf_entry(0).is_err());
}

/// A leaf whose cells lie in insertion order (random keys inserted in place), not key order.
fn leaf_inserted_at_random(keys: &[Vec<u8>]) -> Vec<u8> {
    let mut page = vec![0u8; 4096];
    build(&mut page, TYPE_LEAF, 0, &[] as &[Entry<'_>]);
    for k in keys {
        let index = match PageRef::parse(&page, 1).unwrap().search(|x| x.cmp(k)).unwrap() {
            Ok(_) => continue,
            Err(i) => i,
        };
        assert!(insert_in_place(&mut page[..], 1, index, &leaf(k, &k[..k.len().min(9)])).unwrap());
    }
    page
}

#[test]
fn retain_in_place_keeps_a_range_of_entries_packed_and_its_script_replays() {
    use crate::store::script::{apply, Edit, Script};
    let mut rng = crate::test_rng::TestRng::new(0x5EED);
    // Under Miri a tenth of the cases: all 300 took 7.7 of the test command's ~13 Miri minutes.
    let cases = if cfg!(miri) { 30 } else { 300 };
    for case in 0..cases {
        let n = 1 + rng.next() as usize % 120;
        let keys: Vec<Vec<u8>> = (0..n).map(|_| (0..1 + rng.next() % 20).map(|_| rng.next() as u8).collect()).collect();
        let base = leaf_inserted_at_random(&keys);
        let all = PageRef::parse(&base, 1).unwrap().entries().unwrap();
        let (a, b) = (rng.next() as usize % (all.len() + 1), rng.next() as usize % (all.len() + 1));
        let keep = a.min(b)..a.max(b);
        let mut page = base.clone();
        let mut script = Script::new(page.len(), Vec::new());
        retain_in_place(&mut Edit::new(&mut page, Some(&mut script)), 1, keep.clone()).unwrap();
        let p = PageRef::parse(&page, 1).unwrap();
        assert_eq!(p.entries().unwrap(), all[keep.clone()], "case {case}");
        let live: usize = all[keep.clone()].iter().map(Entry::bytes).sum();
        assert_eq!(p.occupied_bytes(), live, "case {case}: packed, no holes");
        if script.is_whole() {
            let mut enc = Vec::new();
            script.encode(&mut enc);
            let mut out = vec![0u8; page.len()];
            apply(&base, &enc, &mut out).unwrap();
            assert_eq!(out, page, "case {case}: the script replays");
        }
    }
}

#[test]
fn retain_in_place_refuses_a_leaf_whose_slots_share_a_cell() {
    let keys: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i * 7 + 1; 5]).collect();
    let mut page = leaf_inserted_at_random(&keys);
    let first = page[HEADER_BYTES..HEADER_BYTES + 2].to_vec();
    page[HEADER_BYTES + 6..HEADER_BYTES + 8].copy_from_slice(&first);
    let before = page.clone();
    assert!(matches!(retain_in_place(&mut page[..], 1, 2..8), Err(Error::Corrupt { .. })));
    assert_eq!(page, before, "nothing written");
}

#[test]
fn retain_in_place_refuses_a_slot_pointing_inside_another_cell() {
    let keys: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i * 7 + 1; 5]).collect();
    let mut page = leaf_inserted_at_random(&keys);
    let second = u16::from_le_bytes([page[HEADER_BYTES + 2], page[HEADER_BYTES + 3]]);
    page[HEADER_BYTES + 2..HEADER_BYTES + 4].copy_from_slice(&(second + 3).to_le_bytes());
    let before = page.clone();
    assert!(matches!(retain_in_place(&mut page[..], 1, 0..5), Err(Error::Corrupt { .. })));
    assert_eq!(page, before, "nothing written");
}
