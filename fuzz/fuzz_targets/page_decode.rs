//! (b) Arbitrary bytes decoded as a B+ tree page: by the page decoder alone, and planted as a
//! page of a live tree (a leaf, an internal page or the root) that is then read, changed,
//! scanned and verified. Either way a damaged page must be `Corrupt`, never a panic, a hang
//! or an out-of-bounds read.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pcore_fuzz::page::run(data);
});
