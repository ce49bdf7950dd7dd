//! Generates `include/pcore.h` with cbindgen, compiles it as strict C, and gives the shared
//! library its SONAME.

use std::path::PathBuf;

fn main() {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo:rerun-if-changed=src/ffi");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpcore.so.1");

    let config = cbindgen::Config::from_file(root.join("cbindgen.toml")).expect("read cbindgen.toml");
    let header = root.join("include").join("pcore.h");
    // Only the C ABI's own files: the rest of the crate's public items are Rust API.
    let mut builder = cbindgen::Builder::new().with_config(config);
    for file in ["types.rs", "version.rs", "store.rs", "btree.rs"] {
        builder = builder.with_src(root.join("src/ffi").join(file));
    }
    match builder.generate() {
        // Rewritten only when it changes, so its timestamp does not trigger rebuilds; a
        // committed header that differs from this output is stale (the test command checks).
        Ok(bindings) => {
            bindings.write_to_file(&header);
        }
        Err(e) => panic!("cbindgen could not generate include/pcore.h: {e}"),
    }

    cc::Build::new()
        .file(root.join("src/ffi/header_check.c"))
        .include(root.join("include"))
        .flag("-std=c11")
        .flag("-Wall")
        .flag("-Wextra")
        .flag("-Werror")
        .flag("-pedantic")
        .cargo_metadata(false)
        .compile_intermediates();
}
