//! The operating system boundary: mapped memory, preallocation, syncs and the directory lock,
//! and the CPU instructions reached through intrinsics (`carryless`, `prefetch`). Every
//! `unsafe` block that touches a mapping or calls an intrinsic lives here.

mod carryless;
mod file;
mod lock;
mod mapping;
mod prefetch;
mod process;
mod shared_words;
mod space;

pub(crate) use carryless::{crc_of_difference, multiply as carryless_multiply};
pub(crate) use file::{
    exchange, holes, preallocate, punch_hole, sync_dir, write_all_vectored_at, write_all_vectored_at_synced,
};
pub(crate) use lock::{DirLock, LockError};
pub(crate) use mapping::{copy_between, Arena, Mapping};
pub(crate) use prefetch::prefetch;
#[cfg(test)]
pub(crate) use process::exit_code_of_forked;
pub(crate) use process::process_exists;
pub(crate) use shared_words::SharedWords;
pub use space::simulate_disk_limit;
pub(crate) use space::{reserve, simulated_cut_failure, simulated_sync_failure};
#[cfg(test)]
pub(crate) use space::{simulate_cut_failure, simulate_sync_failure};
