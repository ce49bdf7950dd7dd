//! A stand-in for a small disk, for tests: a byte budget on a store directory. Every write that
//! makes the directory's files larger (a segment's preallocation, a log append, a checkpoint)
//! asks first, and gets `ENOSPC` past the budget, as it would from a full filesystem. Raising
//! or removing the budget is freeing space. With no budget set the check is one atomic load.
//!
//! Beside it, for tests only, a sync that fails: a directory's log syncs and its own sync
//! answer `EIO` while it is set, as a disk that lost the pages it was asked to write would;
//! and a log that cannot be cut back after a failed append (`EIO` from its `ftruncate`).

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

#[cfg(test)]
static SYNC_FAILS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
#[cfg(test)]
static CUT_FAILS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Adds `dir` to a list of directories whose operations fail (`failing`), or takes it out.
#[cfg(test)]
fn set_failing(list: &Mutex<Vec<PathBuf>>, dir: &Path, failing: bool) {
    let mut fails = list.lock();
    fails.retain(|d| d != dir);
    if failing {
        fails.push(dir.to_path_buf());
    }
}

/// Makes the syncs of the log in `dir`, and of `dir` itself, fail with `EIO` (`false`: no more).
#[cfg(test)]
pub(crate) fn simulate_sync_failure(dir: &Path, failing: bool) {
    set_failing(&SYNC_FAILS, dir, failing);
}

/// Makes the cut-back of the log in `dir` after a failed append fail with `EIO` (`false`: no
/// more).
#[cfg(test)]
pub(crate) fn simulate_cut_failure(dir: &Path, failing: bool) {
    set_failing(&CUT_FAILS, dir, failing);
}

/// `EIO` when a test made the cut-back of the log `path` fail.
#[inline(always)]
pub(crate) fn simulated_cut_failure(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    {
        if CUT_FAILS.lock().iter().any(|d| path.parent() == Some(d.as_path())) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
    }
    let _ = path;
    Ok(())
}

/// `EIO` when a test made the syncs of `path` (a file in a directory or below it, or the
/// directory) fail.
#[inline(always)]
pub(crate) fn simulated_sync_failure(path: &Path) -> io::Result<()> {
    #[cfg(test)]
    {
        let fails = SYNC_FAILS.lock();
        if fails.iter().any(|d| path.ancestors().any(|a| a == d)) {
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
    }
    let _ = path;
    Ok(())
}
