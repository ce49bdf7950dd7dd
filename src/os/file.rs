//! File-level calls the standard library lacks: preallocation and directory syncs.

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::Path;

/// Reserves `len` bytes of `file` at `offset` on disk, so that later writes through a mapping
/// cannot hit a full disk (which would be a SIGBUS, not an error). A full disk is `ENOSPC` here.
pub(crate) fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let fd = file.as_raw_fd();
    let (off, n) = (to_off(offset)?, to_off(len)?);
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    let rc = unsafe { libc::fallocate(fd, 0, off, n) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    // Filesystems without fallocate (tmpfs on old kernels, some FUSE): glibc writes zeros.
    // SAFETY: as above.
    let rc = unsafe { libc::posix_fallocate(fd, off, n) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

fn to_off(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
