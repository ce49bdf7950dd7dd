//! A stand-in for a small disk, for tests: a byte budget on a store directory. Every write that
//! makes the directory's files larger (a segment's preallocation, a log append, a checkpoint)
//! asks first, and gets `ENOSPC` past the budget, as it would from a full filesystem. Raising
//! or removing the budget is freeing space. With no budget set the check is one atomic load.

use parking_lot::Mutex;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

static ANY_LIMIT: AtomicBool = AtomicBool::new(false);
static LIMITS: Mutex<Vec<(PathBuf, u64)>> = Mutex::new(Vec::new());

/// Limits the files directly in `dir` to `bytes` in all (`None`: no limit).
pub fn simulate_disk_limit(dir: &Path, bytes: Option<u64>) {
    let mut limits = LIMITS.lock();
    limits.retain(|(d, _)| d != dir);
    if let Some(b) = bytes {
        limits.push((dir.to_path_buf(), b));
    }
    ANY_LIMIT.store(!limits.is_empty(), Ordering::Release);
}

/// `ENOSPC` when growing `file` by `extra` bytes would pass its directory's budget.
pub(crate) fn reserve(file: &Path, extra: u64) -> io::Result<()> {
    if !ANY_LIMIT.load(Ordering::Acquire) {
        return Ok(());
    }
    let Some(dir) = file.parent() else { return Ok(()) };
    let Some(limit) = LIMITS.lock().iter().find(|(d, _)| d == dir).map(|&(_, b)| b) else { return Ok(()) };
    let used: u64 = std::fs::read_dir(dir)?.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum();
    if used.saturating_add(extra) > limit {
        return Err(io::Error::from_raw_os_error(libc::ENOSPC));
    }
    Ok(())
}
