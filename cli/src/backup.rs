//! `pcore backup SRC DEST`: a compacted copy of a store's last commit (like `mdb_copy -c`),
//! taken beside a writer: the source is opened read-only, so its writer goes on meanwhile.

use crate::util::{open_existing, progress};
use crate::Outcome;
use pcore::store::BACKUP_REPLACE;
use std::path::Path;
use std::time::Instant;

pub fn run(src: &Path, dest: &Path, replace: bool) -> Result<Outcome, String> {
    let store = open_existing(src, true)?;
    let started = Instant::now();
    let bar = progress(0, "copying nodes");
    let flags = if replace { BACKUP_REPLACE } else { 0 };
    let report = store
        .backup_with_progress(dest, flags, |done, all| {
            bar.set_length(all);
            bar.set_position(done);
        })
        .map_err(|e| format!("backup of {} to {}: {e}", src.display(), dest.display()))?;
    bar.finish_and_clear();
    let ratio = report.disk_bytes as f64 / report.live_bytes.max(1) as f64;
    println!(
        "{}: commit {} of {} copied in {:.2} s: {} nodes, {} roots; {} live bytes, {} on disk ({ratio:.2}x)",
        dest.display(),
        report.epoch,
        src.display(),
        started.elapsed().as_secs_f64(),
        report.nodes,
        report.roots,
        report.live_bytes,
        report.disk_bytes,
    );
    Ok(Outcome::Done)
}
