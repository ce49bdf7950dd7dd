//! Compound tree calls happen whole or not at all: a Multi tree's remove of every value of a
//! key on a disk that fills halfway through changes nothing.

use super::{BTree, Duplicates, TreeOptions};
use crate::error::Error;
use crate::store::tests::{strict, TempDir};
use crate::store::Store;

#[test]
fn removing_every_value_of_a_key_on_a_full_disk_changes_nothing() {
    let dir = TempDir::new("atomic-multi");
    let s = Store::open(dir.path(), &strict()).unwrap();
    let t = BTree::open(&s, b"idx", &TreeOptions { duplicates: Duplicates::Multi, ..TreeOptions::default() }).unwrap();
    let values: Vec<Vec<u8>> = (0..3000u32).map(|i| format!("row-{i:08}-padding").into_bytes()).collect();
    for v in &values {
        t.insert(b"k", v).unwrap();
    }
    for i in 0..500u32 {
        t.insert(b"a", &i.to_be_bytes()).unwrap();
        t.insert(b"z", &i.to_be_bytes()).unwrap();
    }
    s.commit().unwrap();
    // Fill the disk, then give back two page blocks: the removes get two shadows, and
    // the values span many more leaves than that.
    let used: u64 = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    crate::os::simulate_disk_limit(dir.path(), Some(used));
    let mut fillers = Vec::new();
    loop {
        match s.allocate(t.page_bytes(), 1) {
            Ok((id, _, _)) => fillers.push(id),
            Err(Error::NoSpace(_)) => break,
            Err(e) => panic!("{e}"),
        }
    }
    for id in fillers.drain(..2) {
        s.free(id).unwrap();
    }
    let result = t.remove(b"k");
    crate::os::simulate_disk_limit(dir.path(), None);
    assert!(matches!(result, Err(Error::NoSpace(_))), "{result:?}");
    assert_eq!(t.get_all(b"k").unwrap(), values, "every value is still there");
    assert_eq!(t.len(), 4000);
    t.verify().unwrap();
    // With room, the same call removes them all.
    assert!(t.remove(b"k").unwrap());
    assert!(t.get_all(b"k").unwrap().is_empty());
    assert_eq!(t.len(), 1000);
    t.verify().unwrap();
    s.commit().unwrap();
}
