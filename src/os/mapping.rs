//! A mapped region of a class file (or anonymous memory for in-memory stores).
//!
//! The region is held as a raw mapping and reached only through the methods below, so no
//! `&mut [u8]` over the whole region ever exists: a shared slice of one block may live beside a
//! write to another. Callers (the node store) guarantee that a block is not written while a
//! slice of it is borrowed, by taking the store's state lock exclusively for every write.
//!
//! A class file's segments are placed side by side in an [`Arena`], address space reserved
//! for them up front: the kernel merges neighbouring segments of one file into one mapping,
//! so a store of thousands of segments stays far from the process's mapping limit
//! (`vm.max_map_count`), and a close unmaps each arena with one call instead of one call per
//! segment (issue 17's close of an unchanged store).

use memmap2::{MmapOptions, MmapRaw};
use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;
use std::ptr::NonNull;
use std::sync::Arc;

pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
    owner: Owner,
}

/// What unmaps a mapping's memory.
enum Owner {
    /// Its own mapping, unmapped when it drops.
    Own(#[allow(dead_code)] MmapRaw),
    /// A range of an arena, unmapped with the whole arena when the last of its mappings and
    /// the arena itself have dropped.
    Arena(#[allow(dead_code)] Arc<Reservation>),
}

// SAFETY: the mapping is plain memory owned by this value (or by an arena it keeps alive);
// access to its bytes is synchronized by the store's state lock (shared for reads, exclusive
// for writes).
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out reads.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn own(raw: MmapRaw) -> Mapping {
        let ptr = NonNull::new(raw.as_mut_ptr()).expect("a mapping is never at address 0");
        Mapping { ptr, len: raw.len(), owner: Owner::Own(raw) }
    }

    /// Maps `len` bytes of `file` at `offset` privately: writes stay in this process and never
    /// reach the file (read-only opens use it to lay logged payloads over their blocks).
    #[cfg(test)]
    pub(crate) fn private(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        // SAFETY: a private (copy-on-write) mapping; the file may change under it if a writer
        // process runs, which only changes bytes we read, never memory safety of this process:
        // the length is fixed and the file is never truncated below a mapped segment by pcore.
        let mmap = unsafe { MmapOptions::new().offset(offset).len(len).map_copy(file)? };
        Ok(Mapping::own(MmapRaw::from(mmap)))
    }

    /// Zero-filled anonymous memory, for in-memory stores.
    pub(crate) fn anonymous(len: usize) -> io::Result<Mapping> {
        let mmap = MmapOptions::new().len(len).map_anon()?;
        Ok(Mapping::own(MmapRaw::from(mmap)))
    }

    /// Whether the mapping lies in an arena (a class file's segment) rather than on its own.
    pub(crate) fn is_placed(&self) -> bool {
        matches!(self.owner, Owner::Arena(_))
    }

    fn check(&self, offset: usize, len: usize) {
        assert!(
            offset.checked_add(len).is_some_and(|end| end <= self.len),
            "mapping access out of range: {offset}+{len} > {}",
            self.len
        );
    }

    /// The address of `offset`, for the C ABI, which hands raw pointers to its host.
    pub(crate) fn addr(&self, offset: usize) -> usize {
        self.check(offset, 0);
        self.ptr.as_ptr() as usize + offset
    }

    #[inline]
    pub(crate) fn read(&self, offset: usize, len: usize) -> &[u8] {
        self.check(offset, len);
        // SAFETY: in range (checked above) of a live mapping owned by `self`; no write to this
        // range happens while the slice lives, because writes need `&mut self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), len) }
    }

    pub(crate) fn read_mut(&mut self, offset: usize, len: usize) -> &mut [u8] {
        self.check(offset, len);
        // SAFETY: in range (checked) of a live mapping owned by `self`; `&mut self` makes this
        // the only reference into the mapping while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), len) }
    }

    pub(crate) fn write(&mut self, offset: usize, src: &[u8]) {
        self.check(offset, src.len());
        // SAFETY: destination in range (checked); `ptr::copy` allows `src` to overlap the
        // destination (a host may publish from the node's own block).
        unsafe { std::ptr::copy(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) }
    }

    pub(crate) fn copy_within(&mut self, src_offset: usize, dst_offset: usize, len: usize) {
        self.check(src_offset, len);
        self.check(dst_offset, len);
        let base = self.ptr.as_ptr();
        // SAFETY: both ranges in range (checked); `ptr::copy` handles overlap.
        unsafe { std::ptr::copy(base.add(src_offset), base.add(dst_offset), len) }
    }

    pub(crate) fn zero(&mut self, offset: usize, len: usize) {
        self.check(offset, len);
        // SAFETY: in range (checked).
        unsafe { std::ptr::write_bytes(self.ptr.as_ptr().add(offset), 0, len) }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Faults `offset..offset + len` (clipped to the mapping; `offset` page-aligned) in for
    /// writing now, in one call, rather than one page fault at a time as blocks are first
    /// written. Only a hint: on kernels before 5.14 it fails and the pages fault in lazily.
    pub(crate) fn prefault_for_writing(&self, offset: usize, len: usize) {
        self.check(offset, 0);
        let len = len.min(self.len - offset);
        // Miri cannot run madvise; a hint skipped changes nothing it checks.
        #[cfg(all(target_os = "linux", not(miri)))]
        // SAFETY: the range lies in this live mapping (checked and clipped above); the advice
        // only faults its pages in, it changes no byte.
        let _ = unsafe { libc::madvise(self.ptr.as_ptr().add(offset).cast(), len, libc::MADV_POPULATE_WRITE) };
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
        let rc = unsafe { libc::mincore(self.ptr.as_ptr().add(offset).cast(), len, pages.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        pages.iter().map(|&b| b & 1 == 1).collect()
    }

    /// Writes back the pages covering `offset..offset + len` and waits.
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> io::Result<()> {
        self.check(offset, len);
        self.sync(offset, len)
    }

    fn sync(&self, offset: usize, len: usize) -> io::Result<()> {
        // msync wants a page-aligned start; the mapping itself starts on a page.
        let start = offset - offset % page_size();
        // SAFETY: `start..offset + len` lies in this live mapping (callers check the range).
        let rc = unsafe { libc::msync(self.ptr.as_ptr().add(start).cast(), offset + len - start, libc::MS_SYNC) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Address space reserved (inaccessible, no memory committed) for mappings placed in it.
pub(crate) struct Reservation {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a range of address space; nothing in it is reached through this value.
unsafe impl Send for Reservation {}
// SAFETY: as above.
unsafe impl Sync for Reservation {}

impl Reservation {
    fn new(len: usize) -> io::Result<Reservation> {
        // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing: it touches
        // no existing memory. PROT_NONE and MAP_NORESERVE: it commits no memory.
        let at = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if at == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let base = NonNull::new(at.cast()).ok_or_else(|| io::Error::other("mmap returned address 0"))?;
        Ok(Reservation { base, len })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the whole reserved range, with every mapping placed in it: no `Mapping` in it
        // is left (each holds this reservation alive), so nothing reaches these addresses.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// Places one class file's segments side by side, each at the next free slot of the current
/// reservation, the next reservation twice as large as the last once it is full (so a file
/// of n segments spans about log2(n) reservations).
pub(crate) struct Arena {
    slot_bytes: usize,
    /// The reservations, oldest first, each with the slots handed out in it.
    spans: Vec<(Arc<Reservation>, usize)>,
}

/// Slots in an arena's first reservation.
const FIRST_SPAN_SLOTS: usize = 64;

impl Arena {
    /// An arena for mappings of `slot_bytes` (a class file's segment size, page-aligned).
    pub(crate) fn new(slot_bytes: usize) -> Arena {
        Arena { slot_bytes, spans: Vec::new() }
    }

    /// Reserves exactly `slots` slots, before the first mapping is placed (a file opened with
    /// that many segments): they then lie in one reservation, all of it one mapping of the
    /// file once mapped, which a close unmaps with one call over one kernel mapping. Grown
    /// slot by slot they took about log2(slots / 64) + 1 reservations, and the last one's
    /// unused slots are a second kernel mapping: each call and each mapping cost about 2 µs
    /// of `munmap` here, with nothing faulted in. A file that grows later takes a reservation
    /// twice this one's size, as any full arena does.
    pub(crate) fn reserve_first(&mut self, slots: usize) -> io::Result<()> {
        debug_assert!(self.spans.is_empty(), "only before the first mapping");
        let bytes = slots.checked_mul(self.slot_bytes).ok_or_else(|| io::Error::other("reservation too large"))?;
        self.spans.push((Arc::new(Reservation::new(bytes)?), 0));
        Ok(())
    }

    /// How many reservations the arena holds (for tests of how many unmaps a close makes).
    #[cfg(test)]
    pub(crate) fn reservations(&self) -> usize {
        self.spans.len()
    }

    /// Address space reserved in all.
    #[cfg(test)]
    pub(crate) fn reserved_bytes(&self) -> u64 {
        self.spans.iter().map(|(s, _)| s.len as u64).sum()
    }

    /// Maps `self.slot_bytes` of `file` at `offset` into the next free slot: shared (writes
    /// reach the file) or private (they never do).
    pub(crate) fn map(&mut self, file: &File, offset: u64, private: bool) -> io::Result<Mapping> {
        let (span, at) = self.next_slot()?;
        let flags = libc::MAP_FIXED | if private { libc::MAP_PRIVATE } else { libc::MAP_SHARED };
        let offset = libc::off_t::try_from(offset).map_err(|_| io::Error::other("file offset out of range"))?;
        let want = span.base.as_ptr().wrapping_add(at);
        // SAFETY: `want..want + slot_bytes` is a free slot of a reservation this arena holds:
        // address space no other mapping uses (slots are handed out once; see `release_last`),
        // so MAP_FIXED replaces only the reservation's own inaccessible pages there. A private
        // mapping of a file a writer process may change only changes bytes we read; pcore never
        // truncates a file below a segment it maps.
        let got = unsafe {
            libc::mmap(
                want.cast(),
                self.slot_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                file.as_raw_fd(),
                offset,
            )
        };
        if got == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        debug_assert_eq!(got.cast::<u8>(), want);
        let last = self.spans.last_mut().expect("next_slot made a span");
        last.1 += 1;
        Ok(Mapping {
            ptr: NonNull::new(want).expect("inside a reservation"),
            len: self.slot_bytes,
            owner: Owner::Arena(span),
        })
    }

    /// The reservation and byte offset of the next free slot, reserving more when full.
    fn next_slot(&mut self) -> io::Result<(Arc<Reservation>, usize)> {
        if let Some((span, used)) = self.spans.last() {
            if (used + 1) * self.slot_bytes <= span.len {
                return Ok((span.clone(), used * self.slot_bytes));
            }
        }
        let slots = self.spans.last().map_or(FIRST_SPAN_SLOTS, |(s, _)| s.len / self.slot_bytes * 2);
        let span = Arc::new(Reservation::new(slots * self.slot_bytes)?);
        self.spans.push((span.clone(), 0));
        Ok((span, 0))
    }

    /// Gives back the slot of the last mapping handed out (a segment cut from the file's end):
    /// its pages return to the reservation, inaccessible, and the slot is handed out again.
    pub(crate) fn release_last(&mut self, mapping: Mapping) {
        // A reservation whose first mapping failed holds no slot: the mapping is in an older one.
        while self.spans.last().is_some_and(|&(_, used)| used == 0) {
            self.spans.pop();
        }
        let Some((span, used)) = self.spans.last_mut() else { return };
        debug_assert!(*used > 0);
        let at = (*used - 1) * self.slot_bytes;
        debug_assert_eq!(span.base.as_ptr().wrapping_add(at), mapping.ptr.as_ptr());
        // SAFETY: the slot of `mapping`, which is consumed here, so nothing reaches it any
        // more; MAP_FIXED over it puts the reservation's inaccessible pages back.
        unsafe {
            libc::mmap(
                mapping.ptr.as_ptr().cast(),
                self.slot_bytes,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
        *used -= 1;
        if *used == 0 {
            self.spans.pop();
        }
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

    fn temp_file(name: &str, len: u64) -> (std::path::PathBuf, File) {
        let dir = std::env::temp_dir().join(format!("pcore-map-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file =
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(dir.join("f")).unwrap();
        file.set_len(len).unwrap();
        (dir, file)
    }

    /// Lines of /proc/self/maps naming `path`: the kernel's mappings of that file.
    fn mappings_of(path: &std::path::Path) -> usize {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().filter(|l| l.ends_with(path.to_str().unwrap())).count()
    }

    #[test]
    fn arena_places_segments_side_by_side_in_few_mappings() {
        const SLOT: usize = 64 << 10;
        let n = FIRST_SPAN_SLOTS * 3 + 5; // three reservations: 64 + 128 + 256 slots
        let (dir, file) = temp_file("arena", (n * SLOT) as u64);
        let mut arena = Arena::new(SLOT);
        let mut maps: Vec<Mapping> = (0..n).map(|i| arena.map(&file, (i * SLOT) as u64, false).unwrap()).collect();
        for (i, m) in maps.iter_mut().enumerate() {
            m.write(SLOT - 8, &(i as u64).to_le_bytes());
        }
        for (i, m) in maps.iter().enumerate() {
            assert_eq!(m.read(SLOT - 8, 8), (i as u64).to_le_bytes());
            m.flush_range(SLOT - 8, 8).unwrap();
        }
        // Neighbours are adjacent in memory, so the kernel merges them: one mapping of the file
        // per reservation, not one per segment.
        assert_eq!(maps[1].addr(0), maps[0].addr(SLOT));
        assert!(mappings_of(&dir.join("f")) <= 3, "{} mappings", mappings_of(&dir.join("f")));
        let bytes = std::fs::read(dir.join("f")).unwrap();
        assert_eq!(bytes[n * SLOT - 8..], ((n - 1) as u64).to_le_bytes());

        // A cut segment's slot goes back to the arena and is handed out again.
        let last_addr = maps.last().unwrap().addr(0);
        arena.release_last(maps.pop().unwrap());
        let again = arena.map(&file, ((n - 1) * SLOT) as u64, true).unwrap();
        assert_eq!(again.addr(0), last_addr);
        assert_eq!(again.read(SLOT - 8, 8), ((n - 1) as u64).to_le_bytes());
        drop(again);
        drop(maps);
        drop(arena);
        assert_eq!(mappings_of(&dir.join("f")), 0, "everything unmapped once the arena is gone");
        std::fs::remove_dir_all(&dir).unwrap();
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
