//! pcore: a persistence core for C++ database and index engines.
//!
//! - [`Store`]: a node store. Stable node ids over size-class blocks in mapped files,
//!   copy-on-write publishing with growth, atomic commits through a checksummed write-ahead
//!   log, checkpoints, and crash recovery that rebuilds the allocator from the object table.
//! - The C ABI (`include/pcore.h`, generated from [`ffi`]) is a thin, checked translation of
//!   the Rust API: every entry point validates its arguments, catches panics, and returns a
//!   status.
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod alloc;
pub mod btree;
pub mod error;
pub mod ffi;
pub mod limits;
mod os;
pub mod store;
#[doc(hidden)]
pub mod test_rng;

pub use error::{Error, Result, Status};
pub use store::{
    CompactReport, Durability, GrowthPolicy, GrowthRule, NodeId, NodeInfo, Root, Snapshot, Source, Store, StoreOptions,
    StoreStats,
};
