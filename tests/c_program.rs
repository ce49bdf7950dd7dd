//! A C program linked against the shared library cargo built, where cargo left it: it must
//! start without an install or LD_LIBRARY_PATH (the library's SONAME, libpcore.so.<major>,
//! is found beside it).

use std::path::PathBuf;
use std::process::Command;

/// The profile directory holding libpcore.so: this test runs from `<profile>/deps`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(|deps| deps.parent()).expect("<profile>/deps/<test>").to_path_buf()
}

#[test]
fn a_c_program_linked_against_the_cargo_output_starts() {
    let lib_dir = profile_dir();
    assert!(
        lib_dir.join("libpcore.so").exists(),
        "no libpcore.so in {}: `cargo test` builds only the rlib; run `cargo build --release --lib` first \
         (scripts/test.sh does)",
        lib_dir.display()
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let exe = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("linked_from_target");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-o"])
        .arg(&exe)
        .arg(root.join("tests/c/linked_from_target.c"))
        .arg(format!("-I{}", root.join("include").display()))
        .arg(format!("-L{}", lib_dir.display()))
        .arg("-lpcore")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .output()
        .expect("run the C compiler");
    assert!(built.status.success(), "{cc} failed: {}", String::from_utf8_lossy(&built.stderr));

    let ran = Command::new(&exe).env_remove("LD_LIBRARY_PATH").output().expect("start the C program");
    let out = String::from_utf8_lossy(&ran.stdout);
    let err = String::from_utf8_lossy(&ran.stderr);
    assert!(ran.status.success(), "the C program failed ({}): {out}{err}", ran.status);
    assert!(out.starts_with("abi 2."), "{out}");
}
