//! The C ABI: `extern "C"` functions, `#[repr(C)]` types and status constants, from which
//! cbindgen generates `include/pcore.h`. Every entry point runs inside [`guard::call`]: it
//! checks its arguments, catches panics, and records the failure's message per thread.
//! Raw pointers are dereferenced only here.

pub mod backup;
pub mod btree;
pub mod cursor;
mod fork;
mod guard;
mod handle_cache;
pub mod listing;
mod registry;
mod sized;
mod slots;
pub mod snapshot;
pub mod status;
pub mod store;
pub mod types;
pub mod version;
