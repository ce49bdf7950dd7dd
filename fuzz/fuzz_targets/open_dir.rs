//! (c) A store directory of arbitrary files (meta, logs, checkpoints, class files) opened
//! read-only and writable; whatever opens is read node by node, its trees scanned, and
//! verified. Never a panic, a hang, or an allocation sized by a damaged length field.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    pcore_fuzz::dir::run(data);
});
