//! The node store: stable node ids over size-class blocks, copy-on-write publishing with
//! growth, atomic commits through a write-ahead log, checkpoints and crash recovery.
#![forbid(unsafe_code)]

#[cfg(test)]
mod abort_tests;
mod api;
mod backup;
#[cfg(test)]
mod backup_tests;
mod checkpoint;
#[cfg(test)]
mod checkpoint_tests;
mod codec;
mod compact;
#[cfg(test)]
mod compact_tests;
mod core;
#[cfg(test)]
mod crash_tests;
mod crc_update;
#[cfg(test)]
mod damage_tests;
mod delta;
#[cfg(test)]
mod delta_tests;
#[cfg(test)]
mod edge_tests;
mod footprint;
mod handle_list;
mod handle_map;
mod history;
mod inspect;
#[cfg(test)]
mod log_reuse_tests;
mod meta;
mod node_id;
#[cfg(test)]
mod poison_tests;
#[cfg(test)]
mod reader_hold_tests;
mod readers;
mod recovery;
mod reserve;
#[cfg(test)]
mod rest_tests;
pub(crate) mod script;
#[cfg(test)]
mod script_tests;
mod seal;
#[cfg(test)]
mod snapshot_tests;
mod table;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod torn_file_tests;
mod wal;

pub use self::api::{
    AbortGuard, AbortHook, AfterAbort, Durability, GrowthPolicy, NodeEditor, NodeInfo, NodeReader, Root, Snapshot,
    Store, StoreOptions, StoreStats, WeakStore,
};
pub use self::backup::{BackupReport, BACKUP_REPLACE};
pub use self::compact::{CompactReport, CLOSE_COMPACT_BYTES};
pub use self::core::Source;
pub use self::inspect::{inspect_files, CheckpointReport, FileReport, LogReport, MetaSlotState};
pub use self::node_id::NodeId;
pub use self::script::{Edit, PageBytes};
pub use crate::alloc::GrowthRule;
#[doc(hidden)]
pub use crate::os::simulate_disk_limit;
