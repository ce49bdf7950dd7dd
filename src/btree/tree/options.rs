//! What a tree is opened with, and the limits its page size sets.

use super::*;

/// A key order: must be a total order (`verify` detects one that is not).
pub type Comparator = Arc<dyn Fn(&[u8], &[u8]) -> Ordering + Send + Sync>;

/// What inserting an existing key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Duplicates {
    /// `DuplicateKey` error; the tree is unchanged. (The numbers are stored in anchors.)
    Unique = 0,
    /// The new value replaces the old one (Kizuna's non-unique index).
    Overwrite = 1,
    /// One entry per (key, value) pair, ordered by key then value bytes: a true non-unique
    /// index. Values are limited to [`max_inline_value_bytes`].
    Multi = 2,
}

#[derive(Clone)]
pub struct TreeOptions {
    /// A power of two from 512 to 65536.
    pub page_bytes: u32,
    pub duplicates: Duplicates,
    /// `None`: bytewise order, shorter first on a common prefix.
    pub comparator: Option<Comparator>,
    /// An optional ceiling on entries per page (Kizuna's BTREE_MAX_KEYS kept as a safety
    /// net). Bytes decide every split; the ceiling only caps how many entries fit. Not stored
    /// with the tree: it applies to the pages this handle writes.
    pub max_entries_per_page: Option<u32>,
}

impl Default for TreeOptions {
    fn default() -> TreeOptions {
        TreeOptions { page_bytes: 4096, duplicates: Duplicates::Unique, comparator: None, max_entries_per_page: None }
    }
}

pub const PAGE_BYTES_MIN: u32 = 512;
pub const PAGE_BYTES_MAX: u32 = 65536;
/// The deepest a tree grows (the C ABI's `PCORE_TREE_DEPTH_MAX`); a corrupt child pointer
/// that forms a cycle must not loop forever.
pub const DEPTH_MAX: usize = 32;
/// Store node kinds of the tree's nodes (hosts use kinds below 0x40).
pub const KIND_LEAF: u8 = 0x41;
pub const KIND_INTERNAL: u8 = 0x42;
pub const KIND_OVERFLOW: u8 = 0x43;
/// The named root under which a tree's anchor lives: this prefix, then the tree's name.
pub const ROOT_PREFIX: &[u8] = b"btree:";

/// Values up to this many bytes live in the leaf; larger ones in their own store node.
pub fn max_inline_value_bytes(page_bytes: u32) -> usize {
    page_bytes as usize / 16
}

/// The longest key a tree with this page size takes. Any entry (leaf or internal, in any
/// duplicates mode) then needs at most a quarter of a page, so every page holds at least
/// four entries and a split always finds two halves that fit. The largest is a Multi
/// tree's separator: a 10-byte slot, a 2-byte length, the key with its own 2-byte length and
/// the largest inline value, and the child's 8-byte id. 4 KiB pages: 742 bytes.
pub fn max_key_bytes(page_bytes: u32) -> usize {
    page::capacity(page_bytes as usize) / 4 - 22 - max_inline_value_bytes(page_bytes)
}

/// Largest value: its length is stored in 32 bits, and it lives in one store node.
pub const VALUE_BYTES_MAX: usize = u32::MAX as usize;
