//! Space management: size classes, one file per class grown in mapped segments, and a
//! free-block bitmap per segment. Allocator state is derived data, rebuilt from the object
//! table at open; no bitmap is ever persisted (a persisted bitmap that disagrees with the
//! table is how XTree's store overwrote live nodes after a reopen).
#![forbid(unsafe_code)]

mod bitmap;
mod class_file;
mod shrink;
mod size_class;
mod space;
mod stats;

pub(crate) use class_file::Holes;
#[cfg(test)]
pub(crate) use class_file::SYNC_CALLS;
pub use size_class::{GrowthRule, SizeClasses};
pub(crate) use space::{Backing, Loc, Space};
pub use stats::ClassStats;
