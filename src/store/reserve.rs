//! Room kept for a full disk. A store that fills its own volume could neither commit the
//! frees that would give space back (the log must grow by a frame) nor checkpoint (a new
//! piece must be written before the old one goes, and the blocks it frees are held until
//! then): it was stuck until someone made room from outside. So a writer keeps a small
//! preallocated file, `reserve`, beside its files. A checkpoint that finds the disk full
//! gives it up and tries once more (after it, the log's own space takes the commits of the
//! frees: it is written over from its start); the next checkpoint that finds room takes it
//! again. Commits never spend it: ordinary growth would use it up before it is needed. Its
//! bytes count in the store's footprint (`pcore stat`): they are the store's.

use crate::error::{Error, Result};
use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

pub(crate) const RESERVE_FILE: &str = "reserve";
/// The reserve is a 32nd of the store's class files (3 % of its footprint), within these
/// bounds: a checkpoint piece of a store that filled its disk fits in it (a few bytes a node
/// changed since the last one, and a sweep).
const RESERVE_MIN_BYTES: u64 = 16 << 10;
const RESERVE_MAX_BYTES: u64 = 4 << 20;

/// The reserve a store whose class files take `store_bytes` keeps, in whole 4 KiB blocks.
pub(crate) fn bytes_for(store_bytes: u64) -> u64 {
    (store_bytes / 32).clamp(RESERVE_MIN_BYTES, RESERVE_MAX_BYTES) & !4095
}

/// A writer's reserve file and the bytes it holds now.
pub(crate) struct Reserve {
    path: PathBuf,
    held: u64,
}

impl Reserve {
    /// The reserve in `dir`, as the file system has it (none yet: 0 bytes held).
    pub fn open(dir: &Path) -> Reserve {
        let path = dir.join(RESERVE_FILE);
        let held = std::fs::metadata(&path).map_or(0, |m| m.len());
        Reserve { path, held }
    }

    pub fn held(&self) -> u64 {
        self.held
    }

    /// Holds `bytes` of the disk: a larger reserve is cut to them (the store shrank), a
    /// smaller one grows when there is room (a full disk leaves it as it is, to be taken at a
    /// later checkpoint). Other errors are reported.
    pub fn take(&mut self, bytes: u64) -> Result<()> {
        if self.held == bytes {
            return Ok(());
        }
        if self.held > bytes {
            let file = OpenOptions::new().write(true).open(&self.path);
            file.and_then(|f| f.set_len(bytes)).map_err(|e| Error::io(format!("cut {RESERVE_FILE}"), e))?;
            self.held = bytes;
            return Ok(());
        }
        let io = |e| Error::io(format!("preallocate {RESERVE_FILE}"), e);
        let result = crate::os::reserve(&self.path, bytes - self.held).and_then(|()| {
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&self.path)?;
            crate::os::preallocate(&file, 0, bytes)
        });
        match result.map_err(io) {
            Ok(()) => {
                self.held = bytes;
                Ok(())
            }
            Err(Error::NoSpace(_)) => {
                // fallocate may have taken part of it before it failed: keep what the file holds.
                self.held = std::fs::metadata(&self.path).map_or(0, |m| m.len());
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Gives the reserve back to the file system. True when it held anything (a full disk's
    /// commit or checkpoint is then worth trying again).
    pub fn release(&mut self) -> bool {
        if self.held == 0 {
            return false;
        }
        let released = OpenOptions::new().write(true).open(&self.path).and_then(|f| f.set_len(0)).is_ok();
        if released {
            self.held = 0;
        }
        released
    }
}
