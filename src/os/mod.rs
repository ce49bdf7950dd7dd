//! The operating system boundary: mapped memory, preallocation, syncs and the directory lock.
//! Every `unsafe` block that touches a mapping lives here.

mod file;
mod lock;
mod mapping;
mod prefault;
mod prefetch;
mod process;
mod shared_words;
mod space;

pub(crate) use file::{exchange, preallocate, sync_dir, write_all_vectored_at};
pub(crate) use lock::{DirLock, LockError};
pub(crate) use mapping::{copy_between, Arena, Mapping, PrefaultJob};
pub(crate) use prefault::prefault_later;
pub(crate) use prefetch::prefetch;
#[cfg(test)]
pub(crate) use process::exit_code_of_forked;
pub(crate) use process::{in_forked_child, process_exists};
pub(crate) use shared_words::SharedWords;
pub(crate) use space::reserve;
pub use space::simulate_disk_limit;
