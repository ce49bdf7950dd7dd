//! A mapped region of a class file (or anonymous memory for in-memory stores).
//!
//! The region is held as a raw mapping and reached only through the methods below, so no
//! `&mut [u8]` over the whole region ever exists: a shared slice of one block may live beside a
//! write to another. Callers (the node store) guarantee that a block is not written while a
//! slice of it is borrowed, by taking the store's state lock exclusively for every write.

use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::io;

pub(crate) struct Mapping {
    raw: MmapRaw,
}

// SAFETY: the mapping is plain memory owned by this value; access to its bytes is synchronized
// by the store's state lock (shared for reads, exclusive for writes).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out reads.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` at `offset`, shared (writes reach the file).
    pub(crate) fn shared(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        let raw = MmapOptions::new().offset(offset).len(len).map_raw(file)?;
        Ok(Mapping { raw })
    }

    /// Maps `len` bytes of `file` at `offset` privately: writes stay in this process and never
    /// reach the file (read-only opens use it to lay logged payloads over their blocks).
    pub(crate) fn private(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        // SAFETY: a private (copy-on-write) mapping; the file may change under it if a writer
        // process runs, which only changes bytes we read, never memory safety of this process:
        // the length is fixed and the file is never truncated below a mapped segment by pcore.
        let mmap = unsafe { MmapOptions::new().offset(offset).len(len).map_copy(file)? };
        Ok(Mapping { raw: MmapRaw::from(mmap) })
    }

    /// Zero-filled anonymous memory, for in-memory stores.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        let mmap = MmapOptions::new().len(len).map_anon()?;
        Ok(Mapping { raw: MmapRaw::from(mmap) })
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.raw.len()),
            "mapping access out of range: {offset}+{len} > {}",
            self.raw.len()
        );
    }

    /// The address of `offset`, for the C ABI, which hands raw pointers to its host.
    pub(crate) fn addr(&self, offset: usize) -> usize {
        self.check(offset, 0);
        self.raw.as_ptr() as usize + offset
    }

    #[inline]
    pub(crate) fn read(&self, offset: usize, len: usize) -> &[u8] {
        self.check(offset, len);
        // SAFETY: in range (checked above) of a live mapping owned by `self`; no write to this
        // range happens while the slice lives, because writes need `&mut self`.
        unsafe { std::slice::from_raw_parts(self.raw.as_ptr().add(offset), len) }
    }

    pub(crate) fn read_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        self.check(offset, len);
        // SAFETY: in range (checked) of a live mapping owned by `self`; `&mut self` makes this
        // the only reference into the mapping while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.raw.as_mut_ptr().add(offset), len) }
    }

    pub(crate) fn write(&mut self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: destination in range (checked); `ptr::copy` allows `src` to overlap the
        // destination (a host may publish from the node's own block).
        unsafe { std::ptr::copy(src.as_ptr(), self.raw.as_mut_ptr().add(offset), src.len()) }
    }

    pub(crate) fn copy_within(&mut self, src_offset: usize, dst_offset: usize, len: usize) {
        self.check(src_offset, len);
        self.check(dst_offset, len);
        let base = self.raw.as_mut_ptr();
        // SAFETY: both ranges in range (checked); `ptr::copy` handles overlap.
        unsafe { std::ptr::copy(base.add(src_offset), base.add(dst_offset), len) }
    }

    pub(crate) fn zero(&mut self, offset: usize, len: usize) {
        self.check(offset, len);
        // SAFETY: in range (checked).
        unsafe { std::ptr::write_bytes(self.raw.as_mut_ptr().add(offset), 0, len) }
    }

    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Faults `offset..offset + len` (clipped to the mapping; `offset` page-aligned) in for
    /// writing now, in one call, rather than one page fault at a time as blocks are first
    /// written. Only a hint: on kernels before 5.14 it fails and the pages fault in lazily.
    pub(crate) fn prefault_for_writing(&self, offset: usize, len: usize) {
        self.check(offset, 0);
        let len = len.min(self.raw.len() - offset);
        // Miri cannot run madvise; a hint skipped changes nothing it checks.
        #[cfg(all(target_os = "linux", not(miri)))]
        let _ = self.raw.advise_range(memmap2::Advice::PopulateWrite, offset, len);
        #[cfg(any(not(target_os = "linux"), miri))]
        let _ = len;
    }

    /// Which pages of `offset..offset + len` are resident (`mincore`), for tests of prefaulting.
    #[cfg(test)]
    pub(crate) fn resident(&self, offset: usize, len: usize) -> Vec<bool> {
        self.check(offset, len);
        let mut pages = vec![0u8; len.div_ceil(4096)];
        // SAFETY: the range lies in this live mapping (checked) and starts page-aligned when
        // `offset` does (mincore fails otherwise, which the assert reports); `pages` has one
        // byte per page of the range.
        let rc = unsafe { libc::mincore(self.raw.as_mut_ptr().add(offset).cast(), len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        pages.iter().map(|&b| b & 1 == 1).collect()
    }

    /// Writes dirty pages of the whole mapping back to the file and waits (msync).
    pub(crate) fn flush(&self) -> io::Result<()> {
        self.raw.flush()
    }

    /// Writes back the pages covering `offset..offset + len` and waits.
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.check(offset, len);
        self.raw.flush_range(offset, len)
    }
}

/// Copies between two distinct mappings (a node growing into a block of another class).
pub(crate) fn copy_between(src: &Mapping, src_offset: usize, dst: &mut Mapping, dst_offset: usize, len: usize) {
    dst.write(dst_offset, src.read(src_offset, len));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anonymous_is_zeroed_and_writable() {
        let mut m = Mapping::anonymous(4096).unwrap();
        assert!(m.read(0, 4096).iter().all(|&b| b == 0));
        m.write(100, b"hello");
        assert_eq!(m.read(100, 5), b"hello");
        m.copy_within(100, 102, 5);
        assert_eq!(m.read(100, 7), b"hehello");
        m.zero(100, 7);
        assert_eq!(m.read(100, 7), &[0u8; 7]);
    }

    #[test]
    #[should_panic(expected = "out of range")]
    fn out_of_range_access_panics_before_touching_memory() {
        let m = Mapping::anonymous(4096).unwrap();
        let _ = m.read(4090, 10);
    }

    #[test]
    fn private_mapping_never_reaches_the_file() {
        let dir = std::env::temp_dir().join(format!("pcore-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f");
        std::fs::write(&path, vec![7u8; 8192]).unwrap();
        let file = File::open(&path).unwrap();
        let mut m = Mapping::private(&file, 4096, 4096).unwrap();
        assert_eq!(m.read(0, 2), &[7, 7]);
        m.write(0, &[1, 2]);
        assert_eq!(m.read(0, 2), &[1, 2]);
        drop(m);
        assert_eq!(std::fs::read(&path).unwrap()[4096..4098], [7, 7]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
