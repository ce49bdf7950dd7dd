//! `BTree`: a B+ tree whose pages are store nodes, and whose every size decision comes from
//! the bytes entries really use ([`page::entry_bytes`]).
//!
//! Writers hold the tree's lock exclusively and change pages through a [`Plan`] (whole new
//! images, or edits where the pages lie; an edit of a single page, the insert's and the
//! remove's fast paths, needs none): every new page is allocated and every changed page given
//! its copy-on-write shadow before any page is written, so an operation that fails leaves the
//! tree exactly as it was. Changes are
//! durable with the store's next commit. Readers hold the lock shared. A write that edited
//! a leaf in place leaves a hint to it (`hint.rs`): the next write to the same leaf (ascending
//! removes, sorted inserts) skips the descent.

mod anchor;
mod dropping;
mod get;
mod handle;
mod hint;
#[cfg(test)]
mod hint_tests;
mod insert;
mod options;
mod order;
mod overflow;
mod path;
mod plan;
mod planner;
mod rebalance;
mod remove;
#[cfg(test)]
mod tests;

use anchor::*;
pub use anchor::{list_named_roots, list_trees, TreeDescription};
pub use dropping::drop_tree;
pub use handle::BTree;
pub(crate) use handle::State;
use handle::*;
pub(crate) use hint::LeafHint;
pub use options::*;
use order::*;
pub(crate) use order::{split_composite, Probe};
use path::*;
pub(crate) use path::{missing_page, PageReader, Path};
use plan::check_node_kind;
pub(crate) use plan::{PageWrite, Plan, Scratch};
use rebalance::Lost;

use super::page::{self, prefix_word, Cell, Entry, PageRef, Payload, Value, TYPE_INTERNAL, TYPE_LEAF};
use super::split::{below_merge_threshold, even_cuts, internal_split_point, shortest_separator, split_cut, Edge};
use crate::error::{Error, Result};
use crate::store::{AbortGuard, AbortHook, AfterAbort, Edit, NodeEditor, NodeId, Snapshot, Store, WeakStore};
use parking_lot::RwLock;
use planner::{Overflow, PairPlan};
use std::borrow::Cow;
use std::cmp::Ordering;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::sync::Arc;
