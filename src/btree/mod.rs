//! The B+ tree: pages are store nodes, sized and split by the bytes entries really use.
#![forbid(unsafe_code)]

mod bulk;
mod cursor;
mod inspect;
mod page;
mod split;
mod tree;

pub use cursor::Cursor;
pub use inspect::TreeStats;
pub use tree::{
    list_trees, max_inline_value_bytes, max_key_bytes, BTree, Comparator, Duplicates, TreeDescription, TreeOptions,
    KIND_INTERNAL, KIND_LEAF, KIND_OVERFLOW, PAGE_BYTES_MAX, PAGE_BYTES_MIN, ROOT_PREFIX, VALUE_BYTES_MAX,
};
