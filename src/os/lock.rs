//! The single-writer lock of a store directory: an advisory `flock` on the directory itself.
//!
//! The directory is what a user cannot delete by accident while the store is in it: a lock
//! file could be removed (by hand, or by a cleanup of "stray" files), after which a second
//! writer would create a new one and lock that, and two writers would share one store.
//! `flock` locks belong to the open file description, so a second open in the same process is
//! refused just like one in another process, and the lock dies with the process (a SIGKILLed
//! writer never leaves a stale lock behind). The descriptor is close-on-exec, and dropping the
//! lock unlocks the description before closing it: a child forked meanwhile (by another
//! thread of the host, about to exec) shares the description, and merely closing our
//! descriptor would leave the lock held through the child's copy, so an immediate reopen
//! would answer `Busy`.

use std::fs::File;
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
        // std opens with O_CLOEXEC; a directory opens read-only, which is all flock needs.
        let file = File::open(dir).map_err(LockError::Io)?;
        if !file.metadata().map_err(LockError::Io)?.is_dir() {
            return Err(LockError::Io(io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
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

impl Drop for DirLock {
    fn drop(&mut self) {
        // SAFETY: plain syscall on a descriptor we own (closed right after, by File's drop).
        unsafe { libc::flock(self._file.as_raw_fd(), libc::LOCK_UN) };
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

    #[test]
    fn the_lock_is_the_directory_so_no_file_can_be_deleted_to_break_it() {
        let dir = std::env::temp_dir().join(format!("pcore-lock-dir-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir).ok().expect("first lock");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "locking creates no file");
        assert!(matches!(DirLock::acquire(&dir), Err(LockError::Held)));
        drop(first);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dropped_lock_is_free_even_while_a_forked_child_holds_the_descriptor() {
        // The child shares the lock's open file description until it exits; dropping the lock
        // in the parent must free the directory all the same.
        let dir = std::env::temp_dir().join(format!("pcore-lock-fork-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let first = DirLock::acquire(&dir).ok().expect("first lock");
        // SAFETY: the child only sleeps and exits (async-signal-safe calls), touching nothing.
        let child = unsafe { libc::fork() };
        if child == 0 {
            // SAFETY: as above.
            unsafe {
                libc::usleep(300_000);
                libc::_exit(0);
            }
        }
        assert!(child > 0, "fork failed");
        drop(first);
        let again = DirLock::acquire(&dir);
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
        assert!(again.is_ok(), "the directory stayed locked through the forked child's descriptor");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
