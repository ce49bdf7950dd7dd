//! Shared code of pcore's fuzz targets: input formats and the harnesses themselves, so that
//! `make_seeds` can write inputs in exactly the format the targets read.

pub mod abi;
pub mod dir;
pub mod page;
