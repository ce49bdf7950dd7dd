//! (a) Random sequences of C ABI calls checked against a model (see `src/abi.rs`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pcore_fuzz::abi::run(data);
});
