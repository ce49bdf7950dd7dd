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
    // File systems without fallocate (ext2 and ext3, tmpfs on old kernels, some FUSE): zeros
    // written over the whole range, every byte. Not glibc's `posix_fallocate`, which writes a
    // byte per `st_blksize` only: on ext3 with 1 KiB blocks that left three blocks in four
    // unallocated, and a write through the mapping to a punched page there was a SIGBUS on a
    // nearly full disk (outsider13). Every caller preallocates space whose bytes it does not
    // need: a new segment, a free block, a hole, the reserve.
    write_zeros(file, offset, len)
}

fn write_zeros(file: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(ZEROS.len() as u64) as usize;
        file.write_all_at(&ZEROS[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Gives the disk space of `offset..offset + len` back (`FALLOC_FL_PUNCH_HOLE`, the file's
/// length kept): the range reads as zeros and takes no blocks. `Ok(false)` where the file
/// system cannot punch. A page of the range mapped shared faults in again from the hole, and a
/// write to it then allocates on the spot: a `SIGBUS` on a full disk, so the caller fills the
/// range again (`preallocate`) before anything writes there.
pub(crate) fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<bool> {
    let (off, n) = (to_off(offset)?, to_off(len)?);
    let mode = libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE;
    // SAFETY: plain syscall on a descriptor we own; no memory is passed.
    if unsafe { libc::fallocate(file.as_raw_fd(), mode, off, n) } == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => Ok(false),
        _ => Err(err),
    }
}

/// The holes of the file's first `len` bytes, as `(offset, len)` (`SEEK_HOLE`/`SEEK_DATA`;
/// none where the file system does not tell them apart).
pub(crate) fn holes(file: &File, len: u64) -> io::Result<Vec<(u64, u64)>> {
    let fd = file.as_raw_fd();
    let end = to_off(len)?;
    let mut found = Vec::new();
    let mut at: libc::off_t = 0;
    while at < end {
        // SAFETY: plain syscalls on a descriptor we own; no memory is passed.
        let hole = unsafe { libc::lseek(fd, at, libc::SEEK_HOLE) };
        if hole < 0 || hole >= end {
            break; // no hole before the end (or none the file system reports)
        }
        // SAFETY: as above.
        let data = unsafe { libc::lseek(fd, hole, libc::SEEK_DATA) };
        let hole_end = if data < 0 { end } else { data.min(end) };
        found.push((hole as u64, (hole_end - hole) as u64));
        at = hole_end;
    }
    Ok(found)
}

fn to_off(v: u64) -> io::Result<libc::off_t> {
    libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    super::simulated_sync_failure(dir)?;
    File::open(dir)?.sync_all()
}

/// Writes `pieces` one after another at `offset`, all of them (pwritev, at most IOV_MAX
/// pieces a call, resumed after a short write): a commit's frame goes out without its pages
/// being copied into one buffer first.
pub(crate) fn write_all_vectored_at(file: &File, pieces: &[&[u8]], offset: u64) -> io::Result<()> {
    write_vectored_with_flags(file, pieces, offset, 0).map(|_| ())
}

/// As `write_all_vectored_at`, durable when it returns (`RWF_DSYNC`: the bytes, and what is
/// needed to read them back, written out as an `fdatasync` of that range would): one system
/// call where a write and an `fdatasync` take two. Each call syncs its own range, so only
/// pieces that one call takes are written so (more would sync once a call: an outside tester
/// counted 10 device syncs for a 580 KB frame); `Ok(false)`, nothing written, for more, and
/// where the kernel or the file system does not take the flag, or the disk has no room
/// for the bytes (a copy-on-write file system) before any is written. An error may leave any
/// part of the bytes written, synced or not, as a failed `fdatasync` does.
pub(crate) fn write_all_vectored_at_synced(file: &File, pieces: &[&[u8]], offset: u64) -> io::Result<bool> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if pieces.len() > IOV_MAX {
            return Ok(false);
        }
        write_vectored_with_flags(file, pieces, offset, libc::RWF_DSYNC)
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        let _ = (file, pieces, offset);
        Ok(false)
    }
}

/// Pieces one `pwritev` takes (Linux's `UIO_MAXIOV`).
const IOV_MAX: usize = 1024;

/// `Ok(false)` when the first call refused `flags`, or found no room: nothing was written.
fn write_vectored_with_flags(file: &File, pieces: &[&[u8]], offset: u64, flags: libc::c_int) -> io::Result<bool> {
    // A small commit's frame is a few pieces: their iovecs go on the stack, not in a Vec
    // allocated and freed at every commit.
    const IOV_ON_STACK: usize = 8;
    let empty = libc::iovec { iov_base: std::ptr::null_mut(), iov_len: 0 };
    let (mut on_stack, mut on_heap) = ([empty; IOV_ON_STACK], Vec::new());
    let fd = file.as_raw_fd();
    let (mut piece, mut within, mut at) = (0usize, 0usize, offset);
    while piece < pieces.len() {
        if pieces[piece].len() == within {
            (piece, within) = (piece + 1, 0);
            continue;
        }
        let count = (pieces.len() - piece).min(IOV_MAX);
        let iov = if count <= IOV_ON_STACK {
            &mut on_stack[..count]
        } else {
            on_heap.resize(count, empty);
            &mut on_heap[..count]
        };
        for (i, (v, p)) in iov.iter_mut().zip(&pieces[piece..]).enumerate() {
            let skip = if i == 0 { within } else { 0 };
            *v = libc::iovec { iov_base: p[skip..].as_ptr() as *mut libc::c_void, iov_len: p.len() - skip };
        }
        let n = pwritev_with_flags(fd, iov, to_off(at)?, flags);
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            // An older kernel (no pwritev2: ENOSYS) or a file system without the flag
            // (EOPNOTSUPP) refuses the call before writing anything; so does a full disk
            // (a failed write syncs nothing): the plain write then meets it as its own.
            let refused =
                matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EOPNOTSUPP | libc::ENOSPC | libc::EDQUOT));
            if flags != 0 && refused && at == offset {
                return Ok(false);
            }
            return Err(err);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::WriteZero, "pwritev wrote nothing"));
        }
        let mut left = n as usize;
        at += left as u64;
        while left > 0 {
            let rest = pieces[piece].len() - within;
            if left < rest {
                within += left;
                left = 0;
            } else {
                left -= rest;
                (piece, within) = (piece + 1, 0);
            }
        }
    }
    Ok(true)
}

fn pwritev_with_flags(fd: libc::c_int, iov: &[libc::iovec], at: libc::off_t, flags: libc::c_int) -> isize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: every iovec describes live, readable bytes borrowed for the call; pwritev2 only
    // reads them.
    return unsafe { libc::pwritev2(fd, iov.as_ptr(), iov.len() as libc::c_int, at, flags) };
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        debug_assert_eq!(flags, 0, "write flags only where pwritev2 exists");
        // SAFETY: as above, for pwritev.
        unsafe { libc::pwritev(fd, iov.as_ptr(), iov.len() as libc::c_int, at) }
    }
}

/// Swaps two directory entries in one step (`renameat2` with `RENAME_EXCHANGE`): a backup
/// replacing an older copy, which never leaves the name empty.
pub(crate) fn exchange(a: &Path, b: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: two NUL-terminated paths that live across the call; no other memory is passed.
    let rc = unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), libc::RENAME_EXCHANGE) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pieces on the stack's iovecs and past them, past IOV_MAX, empty ones among them, at an
    /// offset: the file holds them one after another.
    #[test]
    fn pieces_of_any_count_are_written_one_after_another() {
        let path = std::env::temp_dir().join(format!("pcore-vectored-{}", std::process::id()));
        for count in [0, 1, 7, 8, 9, 1023, 1024, 1025, 2500] {
            let owned: Vec<Vec<u8>> = (0..count).map(|i| vec![(i % 251) as u8; (i * 7) % 13]).collect();
            let pieces: Vec<&[u8]> = owned.iter().map(|p| &p[..]).collect();
            let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
            write_all_vectored_at(&file, &pieces, 3).unwrap();
            let bytes = owned.concat();
            // Nothing to write leaves the file empty; else the offset's bytes are a hole.
            let want = if bytes.is_empty() { bytes } else { [vec![0u8; 3], bytes].concat() };
            assert_eq!(std::fs::read(&path).unwrap(), want, "{count} pieces");
        }
        std::fs::remove_file(&path).unwrap();
    }

    /// A synced write takes only pieces one call writes (each call syncs its own range):
    /// more are refused with nothing written, for a write and one `fdatasync`.
    #[test]
    fn a_synced_write_takes_only_what_one_call_writes() {
        let path = std::env::temp_dir().join(format!("pcore-vectored-synced-{}", std::process::id()));
        for count in [1, 8, 9, 1024, 1025] {
            let owned: Vec<Vec<u8>> = (0..count).map(|i| vec![(i % 251) as u8; 1 + i % 13]).collect();
            let pieces: Vec<&[u8]> = owned.iter().map(|p| &p[..]).collect();
            let file = File::options().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
            let taken = write_all_vectored_at_synced(&file, &pieces, 0).unwrap();
            let want = if taken { owned.concat() } else { Vec::new() };
            assert_eq!(std::fs::read(&path).unwrap(), want, "{count} pieces");
            #[cfg(all(target_os = "linux", target_env = "gnu"))]
            assert_eq!(taken, count <= IOV_MAX, "{count} pieces");
        }
        std::fs::remove_file(&path).unwrap();
    }
}
