//! A small file shared by processes as an array of atomic 64-bit words, with a byte-range lock
//! per record: the store's reader table lives in one.
//!
//! The locks are open-file-description locks (`F_OFD_SETLK`): they belong to the descriptor
//! that took them, not to the process, so two opens in one process exclude each other as two
//! processes do, and the kernel drops them when the holder dies, SIGKILL included. A record
//! whose lock nobody holds is a record nobody owns, whatever its words say: that is how a
//! dead reader is told from a live one without trusting pids, which the system reuses.

use memmap2::MmapRaw;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::OnceLock;

pub(crate) struct SharedWords {
    file: File,
    /// Mapped on first use (`map`): a store's writer that commits nothing (opened, read,
    /// closed) looks at the file with `read` and never maps it, so its close has no `munmap`
    /// to make (~2.3 µs here, issue 17's close of an unchanged store).
    map: OnceLock<MmapRaw>,
    words: usize,
}

impl SharedWords {
    /// Opens (creating it when `create`) the file at `path`, at least `bytes` long (a
    /// multiple of 8), to be mapped shared for reading and writing when first needed.
    pub(crate) fn open(path: &Path, bytes: u64, create: bool) -> io::Result<SharedWords> {
        debug_assert!(bytes.is_multiple_of(8) && bytes > 0);
        let file = OpenOptions::new().read(true).write(true).create(create).truncate(false).mode(0o644).open(path)?;
        // Two processes may create it at once: growing to the same length is harmless, and
        // the new bytes are zeros, which every record reads as empty.
        if file.metadata()?.len() < bytes {
            file.set_len(bytes)?;
        }
        Ok(SharedWords { file, map: OnceLock::new(), words: (bytes / 8) as usize })
    }

    /// Maps the file (once; later calls find it mapped): the words are then reached with
    /// [`word`](Self::word) and [`words`](Self::words).
    pub(crate) fn map(&self) -> io::Result<&[AtomicU64]> {
        if self.map.get().is_none() {
            let map = MmapRaw::map_raw(&self.file)?;
            if (map.len() as u64) < self.words as u64 * 8 {
                return Err(io::Error::other("the shared file is shorter than it was made"));
            }
            // Another thread may have mapped it meanwhile: its mapping is kept, this one dropped.
            let _ = self.map.set(map);
        }
        Ok(self.words())
    }

    /// Whether the file is mapped yet.
    #[inline]
    pub(crate) fn is_mapped(&self) -> bool {
        self.map.get().is_some()
    }

    /// Reads words `first..first + out.len()` from the file (`pread`), without mapping it:
    /// each word as another process's last store to it left it, as a load would see it.
    pub(crate) fn read(&self, first: usize, out: &mut [u64]) -> io::Result<()> {
        assert!(first + out.len() <= self.words, "words {first}+{} of {}", out.len(), self.words);
        let mut bytes = vec![0u8; out.len() * 8];
        self.file.read_exact_at(&mut bytes, first as u64 * 8)?;
        for (w, b) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *w = u64::from_ne_bytes(b.try_into().expect("8 bytes"));
        }
        Ok(())
    }

    #[inline]
    fn mapping(&self) -> &MmapRaw {
        self.map.get().expect("the shared file is mapped (`map`) before its words are reached")
    }

    /// Word `index` of the file, shared with every process that maps it. Only once mapped.
    pub(crate) fn word(&self, index: usize) -> &AtomicU64 {
        assert!(index < self.words, "word {index} of {}", self.words);
        // SAFETY: the mapping is at least `words * 8` bytes (checked when mapped) and page
        // aligned, so the word is in bounds and 8-byte aligned; it lives as long as `self` (the
        // mapping is unmapped only when `self` drops). Other processes change it only through
        // atomic operations on the same address, which is what AtomicU64 is for.
        unsafe { &*self.mapping().as_mut_ptr().add(index * 8).cast::<AtomicU64>() }
    }

    /// Every word of the file, as [`word`](Self::word) gives them one by one: a scan of many
    /// words in a row checks the bounds once. Only once mapped.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        // SAFETY: as in `word`: the mapping holds `words` 8-byte aligned words for as long as
        // `self` lives, changed by other processes only through atomic operations.
        unsafe { std::slice::from_raw_parts(self.mapping().as_mut_ptr().cast::<AtomicU64>(), self.words) }
    }

    /// Takes the lock on bytes `[start, start + len)` without waiting: false when another
    /// descriptor (of this process or another) holds it.
    pub(crate) fn try_lock(&self, start: u64, len: u64) -> io::Result<bool> {
        match self.fcntl_lock(libc::F_OFD_SETLK, libc::F_WRLCK, start, len) {
            Ok(_) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::EACCES)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Releases a lock taken by `try_lock`.
    pub(crate) fn unlock(&self, start: u64, len: u64) {
        let _ = self.fcntl_lock(libc::F_OFD_SETLK, libc::F_UNLCK, start, len);
    }

    /// True when another descriptor holds a lock on some of `[start, start + len)`.
    pub(crate) fn is_locked_elsewhere(&self, start: u64, len: u64) -> io::Result<bool> {
        let probe = self.fcntl_lock(libc::F_OFD_GETLK, libc::F_WRLCK, start, len)?;
        Ok(probe.l_type != libc::F_UNLCK as libc::c_short)
    }

    fn fcntl_lock(&self, cmd: libc::c_int, kind: libc::c_int, start: u64, len: u64) -> io::Result<libc::flock> {
        // SAFETY: an all-zero `flock` is a valid value of this plain C struct.
        let mut fl: libc::flock = unsafe { std::mem::zeroed() };
        fl.l_type = kind as libc::c_short;
        fl.l_whence = libc::SEEK_SET as libc::c_short;
        fl.l_start = start as libc::off_t;
        fl.l_len = len as libc::off_t;
        fl.l_pid = 0; // required by OFD locks
                      // SAFETY: a plain syscall on a descriptor we own, with a pointer to a live `flock`.
        let rc = unsafe { libc::fcntl(self.file.as_raw_fd(), cmd, &mut fl as *mut libc::flock) };
        if rc == -1 {
            return Err(io::Error::last_os_error());
        }
        Ok(fl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::Ordering;

    #[test]
    fn locks_exclude_other_descriptors_and_words_are_shared() {
        let dir = std::env::temp_dir().join(format!("pcore-words-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("w");
        let a = SharedWords::open(&path, 128, true).unwrap();
        let b = SharedWords::open(&path, 128, false).unwrap();
        a.map().unwrap()[3].store(42, Ordering::SeqCst);
        let mut read = [0u64; 2];
        b.read(2, &mut read).unwrap();
        assert_eq!(read, [0, 42], "read without mapping");
        assert!(!b.is_mapped());
        b.map().unwrap();
        assert_eq!(b.word(3).load(Ordering::SeqCst), 42);
        assert!(a.try_lock(64, 64).unwrap());
        assert!(!b.try_lock(64, 64).unwrap(), "another description is refused");
        assert!(b.is_locked_elsewhere(64, 64).unwrap());
        assert!(!b.is_locked_elsewhere(0, 64).unwrap());
        drop(a); // closing the descriptor drops its locks
        assert!(!b.is_locked_elsewhere(64, 64).unwrap());
        assert!(b.try_lock(64, 64).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
