//! Dropping a tree: every page and every large value's node freed and the anchor removed, as
//! one change of the store's uncommitted state, durable at the next commit. Everything is
//! found and checked first (every page read and parsed, every node freeable) and only then
//! freed, so a drop that fails changes nothing. Open handles of the tree (they share one
//! instance) and their cursors answer `BadHandle` afterwards instead of reading freed pages.

use super::{decode_anchor, BTree, Inner, DEPTH_MAX, ROOT_PREFIX};
use crate::btree::page::{PageRef, Value};
use crate::error::{Error, Result};
use crate::store::{NodeId, Store};
use std::sync::atomic::Ordering as AtomicOrdering;

/// Drops the tree `name` from `store` (see the module's comment). `NotFound` when the store
/// holds no such tree.
pub fn drop_tree(store: &Store, name: &[u8]) -> Result<()> {
    if store.is_read_only() {
        // A write, whether or not the tree exists: answered as every write on such a store.
        return Err(Error::ReadOnly);
    }
    let mut anchor = ROOT_PREFIX.to_vec();
    anchor.extend_from_slice(name);
    // The attachments stay locked throughout: nobody opens the tree while it is dropped.
    store.detach_with::<Inner, _>(&anchor, |open| match open {
        Some(inner) => {
            let mut st = inner.state.write();
            let nodes = tree_nodes(store, st.root, st.height)?;
            store.free_all_and_remove_root(&nodes, &anchor)?;
            st.dropped = true;
            st.root = 0;
            st.entries = 0;
            // Cursors re-check the version: theirs is stale now.
            inner.version.fetch_add(1, AtomicOrdering::AcqRel);
            Ok(())
        }
        None => {
            let Some(root) = store.get_root(&anchor)? else {
                return Err(Error::NotFound(format!("no B+ tree named {:?}", String::from_utf8_lossy(name))));
            };
            let d = decode_anchor(name, root.id, &root.meta)?;
            let nodes = tree_nodes(store, root.id, d.height)?;
            store.free_all_and_remove_root(&nodes, &anchor)
        }
    })
}

impl BTree {
    /// True once the tree was dropped (through any handle).
    pub fn is_dropped(&self) -> bool {
        self.inner.state.read().dropped
    }
}

/// Every node of the tree with this root and height: its pages and its large values' nodes.
fn tree_nodes(store: &Store, root: u64, height: u32) -> Result<Vec<NodeId>> {
    let mut nodes = Vec::new();
    let mut level = vec![root];
    for depth in 0..height as usize {
        if depth >= DEPTH_MAX {
            return Err(Error::corrupt("B+ tree anchor", 0, format!("height {height} is beyond any tree's")));
        }
        let leaves = depth + 1 == height as usize;
        let mut next = Vec::new();
        for &id in &level {
            nodes.push(NodeId::from_raw(id));
            let bytes = store.read(NodeId::from_raw(id)).map_err(|e| super::missing_page(id, e))?;
            let page = PageRef::parse(&bytes, id)?;
            if page.is_leaf() != leaves {
                return Err(Error::corrupt(
                    format!("B+ tree page {id:#x}"),
                    0,
                    format!(
                        "a {} at depth {depth} of a tree of height {height}",
                        if leaves { "internal page" } else { "leaf" }
                    ),
                ));
            }
            if !leaves {
                next.push(page.leftmost_child());
            }
            for i in 0..page.len() {
                if !leaves {
                    next.push(page.child(i)?);
                } else if let Value::Overflow(vid, _) = page.leaf_value(i)? {
                    nodes.push(NodeId::from_raw(vid));
                }
            }
        }
        level = next;
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::{list_trees, Cursor, Duplicates, TreeOptions};
    use crate::store::tests::{reopen, TempDir};
    use crate::store::{Durability, StoreOptions};

    fn opts() -> StoreOptions {
        StoreOptions { durability: Durability::Strict, ..StoreOptions::default() }
    }

    fn small() -> TreeOptions {
        TreeOptions { page_bytes: 512, duplicates: Duplicates::Overwrite, ..TreeOptions::default() }
    }

    /// A tree of several levels, with large values in their own nodes.
    fn fill(tree: &BTree, n: u32) {
        for i in 0..n {
            let value = if i % 10 == 0 { vec![i as u8; 700] } else { i.to_le_bytes().to_vec() };
            tree.insert(format!("key{i:06}").as_bytes(), &value).unwrap();
        }
    }

    fn names(store: &Store) -> Vec<Vec<u8>> {
        list_trees(store).unwrap().into_iter().map(|d| d.name).collect()
    }

    #[test]
    fn a_drop_on_a_read_only_store_is_read_only_whether_or_not_the_tree_exists() {
        let dir = TempDir::new("btree-drop-ro");
        let store = Store::open(dir.path(), &opts()).unwrap();
        fill(&BTree::open(&store, b"t", &small()).unwrap(), 10);
        store.commit().unwrap();
        store.close().unwrap();
        let ro = reopen(dir.path(), &StoreOptions { read_only: true, ..opts() });
        for name in [&b"t"[..], b"missing"] {
            assert!(matches!(drop_tree(&ro, name), Err(Error::ReadOnly)), "{:?}", String::from_utf8_lossy(name));
        }
        assert_eq!(names(&ro), vec![b"t".to_vec()]);
    }

    #[test]
    fn a_dropped_tree_frees_every_node_and_is_gone_after_commit_and_reopen() {
        let dir = TempDir::new("btree-drop");
        let store = Store::open(dir.path(), &opts()).unwrap();
        let keep = BTree::open(&store, b"keep", &small()).unwrap();
        fill(&keep, 50);
        store.commit().unwrap();
        let before = store.stats().unwrap().live_nodes;
        let tree = BTree::open(&store, b"gone", &small()).unwrap();
        fill(&tree, 2000);
        store.commit().unwrap();
        let stats = tree.stats().unwrap();
        assert!(stats.height >= 3 && stats.overflow_values == 200, "{stats:?}");
        assert!(store.stats().unwrap().live_nodes > before + 200);

        drop_tree(&store, b"gone").unwrap();
        assert!(tree.is_dropped());
        assert_eq!(names(&store), vec![b"keep".to_vec()]);
        store.commit().unwrap();
        assert_eq!(store.stats().unwrap().live_nodes, before, "every page and value node freed");
        store.verify().unwrap();
        keep.verify().unwrap();
        drop(tree);
        drop(keep);
        store.close().unwrap();

        // Replayed from the log...
        let store = reopen(dir.path(), &opts());
        assert_eq!(names(&store), vec![b"keep".to_vec()]);
        assert_eq!(store.stats().unwrap().live_nodes, before);
        store.verify().unwrap();
        // ...and from a checkpoint.
        store.checkpoint().unwrap();
        store.close().unwrap();
        let store = reopen(dir.path(), &opts());
        assert_eq!(names(&store), vec![b"keep".to_vec()]);
        assert_eq!(BTree::open(&store, b"keep", &small()).unwrap().len(), 50);
        store.verify().unwrap();
    }

    #[test]
    fn handles_and_cursors_of_a_dropped_tree_answer_errors() {
        let store = Store::in_memory(&StoreOptions::default()).unwrap();
        let tree = BTree::open(&store, b"t", &small()).unwrap();
        let other = BTree::open(&store, b"t", &small()).unwrap();
        fill(&tree, 500);
        let mut cursor = Cursor::new(&other);
        cursor.first().unwrap();
        assert!(cursor.current().unwrap().is_some());

        drop_tree(&store, b"t").unwrap();
        for t in [&tree, &other] {
            assert!(matches!(t.get(b"key000001"), Err(Error::BadHandle(_))));
            assert!(matches!(t.insert(b"k", b"v"), Err(Error::BadHandle(_))));
            assert!(matches!(t.remove(b"key000001"), Err(Error::BadHandle(_))));
            assert!(matches!(t.verify(), Err(Error::BadHandle(_))));
            assert_eq!(t.len(), 0);
        }
        assert!(cursor.move_next().is_err());
        assert!(cursor.current().is_err());
        assert!(cursor.first().is_err());
        assert!(matches!(drop_tree(&store, b"t"), Err(Error::NotFound(_))));
        store.verify().unwrap();

        // The name is free: opening it makes a new, empty tree.
        let fresh = BTree::open(&store, b"t", &small()).unwrap();
        assert_eq!(fresh.len(), 0);
        fresh.insert(b"a", b"1").unwrap();
        assert_eq!(fresh.get(b"a").unwrap(), Some(b"1".to_vec()));
        assert!(tree.get(b"a").is_err(), "an old handle stays dropped");
    }

    #[test]
    fn a_drop_that_fails_changes_nothing() {
        let dir = TempDir::new("btree-drop-fail");
        let store = Store::open(dir.path(), &opts()).unwrap();
        let tree = BTree::open(&store, b"t", &small()).unwrap();
        fill(&tree, 300);
        store.commit().unwrap();
        assert!(matches!(drop_tree(&store, b"none"), Err(Error::NotFound(_))));

        // One large value's node freed behind the tree's back: the drop finds it unfreeable
        // after reading every page, and frees nothing.
        let root = store.get_root(b"btree:t").unwrap().unwrap();
        let nodes = tree_nodes(&store, root.id, tree.stats().unwrap().height).unwrap();
        let victim =
            *nodes.iter().rev().find(|&&id| store.info(id).unwrap().kind == super::super::KIND_OVERFLOW).unwrap();
        store.free(victim).unwrap();
        let before = store.stats().unwrap();
        assert!(drop_tree(&store, b"t").is_err());
        let after = store.stats().unwrap();
        assert_eq!((after.live_nodes, after.reserved_nodes), (before.live_nodes, before.reserved_nodes));
        assert!(!tree.is_dropped());
        assert_eq!(tree.get(b"key000001").unwrap(), Some(1u32.to_le_bytes().to_vec()));
        assert_eq!(names(&store), vec![b"t".to_vec()]);

        // A drop never committed: the tree is back after a reopen.
        drop(tree);
        store.close().unwrap();
        let store = reopen(dir.path(), &opts());
        drop_tree(&store, b"t").unwrap();
        store.close().unwrap();
        let store = reopen(dir.path(), &opts());
        assert_eq!(BTree::open(&store, b"t", &small()).unwrap().len(), 300);

        // Read-only: refused, nothing changes.
        store.close().unwrap();
        let ro = reopen(dir.path(), &StoreOptions { read_only: true, ..opts() });
        assert!(matches!(drop_tree(&ro, b"t"), Err(Error::ReadOnly)));
        assert_eq!(names(&ro), vec![b"t".to_vec()]);
    }

    #[test]
    fn a_root_removed_then_set_again_before_the_commit_survives_it() {
        let dir = TempDir::new("btree-drop-recreate");
        let store = Store::open(dir.path(), &opts()).unwrap();
        fill(&BTree::open(&store, b"t", &small()).unwrap(), 100);
        store.commit().unwrap();
        drop_tree(&store, b"t").unwrap();
        fill(&BTree::open(&store, b"t", &small()).unwrap(), 7);
        store.commit().unwrap();
        store.close().unwrap();
        let store = reopen(dir.path(), &opts());
        assert_eq!(BTree::open(&store, b"t", &small()).unwrap().len(), 7);
        store.verify().unwrap();
    }
}
