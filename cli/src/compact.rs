//! `pcore compact DIR`: moves nodes forward and cuts the class files' free tails (see
//! `Store::compact`), with a progress bar on a terminal, and says what it gave back.

use crate::util::{dir_bytes, mib, open_existing, progress};
use crate::Outcome;
use std::path::Path;

pub fn run(dir: &Path) -> Result<Outcome, String> {
    // Measured before the open: a writer's open may already cut free tails.
    let before = dir_bytes(dir);
    let store = open_existing(dir, false)?;
    let bar = progress(0, "compact: move nodes");
    let report = store
        .compact(|moved, movable| {
            bar.set_length(movable);
            bar.set_position(moved);
        })
        .map_err(|e| format!("{}: {e}", dir.display()))?;
    bar.finish_and_clear();
    store.close().map_err(|e| format!("{}: close: {e}", dir.display()))?;
    let after = dir_bytes(dir);
    let ratio = after as f64 / report.live_bytes.max(1) as f64;
    println!(
        "compacted {}: moved {} nodes ({:.1} MiB); {:.1} MiB -> {:.1} MiB on disk for {:.1} MiB of live blocks \
         (footprint {:.2}x)",
        dir.display(),
        report.moved_nodes,
        mib(report.moved_bytes),
        mib(before),
        mib(after),
        mib(report.live_bytes),
        ratio
    );
    if report.pinned_bytes > 0 {
        println!(
            "  {:.1} MiB could not be given back: blocks a snapshot or a read-only process still reads \
             (compact again once they end)",
            mib(report.pinned_bytes)
        );
    }
    Ok(Outcome::Done)
}
