//! The single-writer lock of a store directory: an advisory `flock` on its `LOCK` file.
//!
//! `flock` locks belong to the open file description, so a second open in the same process is
//! refused just like one in another process, and the lock dies with the process (a SIGKILLed
//! writer never leaves a stale lock behind). The descriptor is close-on-exec; a host that
//! forks keeps the lock in the child until the child execs or exits, so a reopen in that
//! window answers `Busy`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

pub(crate) struct DirLock {
    _file: File,
}

pub(crate) enum LockError {
    Held,
    Io(io::Error),
}

impl DirLock {
    pub(crate) fn acquire(dir: &Path) -> Result<DirLock, LockError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))
            .map_err(LockError::Io)?;
        // SAFETY: plain syscall on a descriptor we own.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(DirLock { _file: file });
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Err(LockError::Held)
        } else {
            Err(LockError::Io(err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("pcore-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir).ok().expect("first lock");
        assert!(matches!(DirLock::acquire(&dir), Err(LockError::Held)));
        drop(first);
        assert!(DirLock::acquire(&dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
