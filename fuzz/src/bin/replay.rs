//! Runs every committed input (`corpus/<target>/` and `regressions/<target>/`) through its
//! target's harness once, without libFuzzer: the test command's check that the harnesses
//! still build against pcore and that no input found before (a crash since fixed, or the
//! corpus's coverage) fails now. A failure is what it is under libFuzzer: a panic (the
//! harnesses compare pcore with their models) or an abort; the input's path is printed.
//!
//! cargo run --release --bin replay [-- ROOT]   (ROOT: the directory holding corpus/ and
//! regressions/; default: this crate's)

use std::path::{Path, PathBuf};
use std::time::Instant;

type Harness = fn(&[u8]);

const TARGETS: [(&str, Harness); 3] =
    [("c_abi", pcore_fuzz::abi::run), ("open_dir", pcore_fuzz::dir::run), ("page_decode", pcore_fuzz::page::run)];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn main() {
    let root = std::env::args().nth(1).map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let (mut total, mut failed) = (0usize, 0usize);
    for (target, run) in TARGETS {
        let t = Instant::now();
        let mut count = 0usize;
        for set in ["corpus", "regressions"] {
            for input in inputs(&root.join(set).join(target)) {
                let data = std::fs::read(&input).unwrap_or_else(|e| panic!("read {}: {e}", input.display()));
                let outcome = std::panic::catch_unwind(|| run(&data));
                if outcome.is_err() {
                    eprintln!("replay: {target} failed on {}", input.display());
                    failed += 1;
                }
                count += 1;
            }
        }
        println!("replay: {target}: {count} inputs, {:.1} s", t.elapsed().as_secs_f64());
        total += count;
    }
    if failed > 0 {
        eprintln!("replay: {failed} of {total} inputs failed");
        std::process::exit(1);
    }
    if total == 0 {
        eprintln!("replay: no input under {}", root.display());
        std::process::exit(1);
    }
}
