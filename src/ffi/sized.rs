//! Versioned structs: how a struct's `struct_size` lets a host and a library built from
//! different headers exchange it. Every versioned struct starts with a `u64` struct_size and
//! has only 8-byte fields, so any size that is a multiple of 8 ends on a field boundary: no
//! table of field offsets is needed, and half a pointer is never read.

use crate::error::{Error, Result};

// Every field of a versioned struct is 8 bytes wide, size_t and pointers included.
const _: () = assert!(std::mem::size_of::<usize>() == 8, "pcore's C ABI is for 64-bit targets");

const FIELD: usize = 8;

/// The caller's `struct_size`, checked: a multiple of 8 and at least `min`.
///
/// # Safety
/// `p` is non-null and points to at least 8 readable bytes.
unsafe fn caller_size<T>(p: *const T, min: usize) -> Result<usize> {
    // SAFETY: non-null, and the leading u64 is readable, by this function's contract.
    let size = unsafe { p.cast::<u64>().read_unaligned() };
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    if size < min || !size.is_multiple_of(FIELD) {
        return Err(Error::InvalidArgument(format!(
            "struct_size {size}: must be a multiple of 8 and at least {min} (set it to sizeof the struct)"
        )));
    }
    Ok(size)
}

/// Reads a caller's versioned struct over `defaults`: fields past the caller's size keep
/// their defaults, fields past ours (a newer header) are ignored. NULL gives the defaults.
///
/// # Safety
/// `p` is NULL or points to `p->struct_size` readable bytes, the first field a `u64` struct_size.
pub(crate) unsafe fn read_sized<T: Copy>(p: *const T, defaults: T) -> Result<T> {
    let mut out = defaults;
    if p.is_null() {
        return Ok(out);
    }
    // SAFETY: non-null; the struct_size field is readable by contract.
    let n = unsafe { caller_size(p, FIELD)? }.min(std::mem::size_of::<T>());
    // SAFETY: the caller's struct has struct_size >= n readable bytes; `out` is a local of at
    // least n bytes; they cannot overlap.
    unsafe { std::ptr::copy_nonoverlapping(p.cast::<u8>(), std::ptr::addr_of_mut!(out).cast::<u8>(), n) };
    Ok(out)
}

/// A caller's versioned output struct whose size was checked: made before the call does any
/// work, so a bad size fails the call before anything changes.
pub(crate) struct SizedOut<T> {
    p: *mut T,
    /// The caller's struct_size, written back unchanged.
    size: u64,
    n: usize,
}

impl<T: Copy> SizedOut<T> {
    /// Checks `p` (non-null) and its struct_size (a multiple of 8 that holds at least one
    /// field past struct_size).
    ///
    /// # Safety
    /// `p` is NULL or points to `p->struct_size` writable bytes, the first field a `u64`.
    pub(crate) unsafe fn new(p: *mut T, name: &str) -> Result<SizedOut<T>> {
        super::guard::non_null(p, name)?;
        // SAFETY: non-null; the struct_size field is readable by contract.
        let size = unsafe { caller_size(p, 2 * FIELD)? };
        Ok(SizedOut { p, size: size as u64, n: size.min(std::mem::size_of::<T>()) })
    }

    /// Writes `full` up to the caller's size, keeping the caller's struct_size.
    pub(crate) fn write(self, full: T) {
        // SAFETY: `p` has n >= 16 writable bytes (checked by `new`, by the export's contract);
        // `full` is a local of at least n bytes. The first 8 bytes (struct_size) are kept.
        unsafe {
            std::ptr::copy_nonoverlapping(
                std::ptr::addr_of!(full).cast::<u8>().add(FIELD),
                self.p.cast::<u8>().add(FIELD),
                self.n - FIELD,
            )
        };
    }

    /// As `write`, for a hot call: `make` builds the value where it is written. For a caller
    /// built from this header, that is a typed write whose fields are stored one by one from
    /// registers. A byte copy (`write`, even of a constant length) goes through a copy of the
    /// value on the stack, read back with 16-byte loads that straddle its 8-byte stores and
    /// miss store forwarding: 18% of an allocate+free, when the copy was a call to memcpy.
    /// (One value for both cases, as `write` takes, is kept in memory for the byte copy's sake.)
    #[inline]
    pub(crate) fn write_with(self, make: impl Fn() -> T) {
        if self.n == std::mem::size_of::<T>() && self.p.is_aligned() {
            // SAFETY: `p` is aligned (checked) and has at least size_of::<T>() writable bytes
            // (checked by `new`, by the export's contract); its first field is the u64
            // struct_size, put back as it was.
            unsafe {
                self.p.write(make());
                self.p.cast::<u64>().write(self.size);
            }
        } else {
            self.write(make());
        }
    }
}

/// Fills the first `size` bytes of a caller's input struct (`size`: the struct as the
/// caller's header has it) from `full` and sets its struct_size to what was written: a
/// library newer than the caller's header never writes past the caller's struct.
///
/// # Safety
/// `p` is non-null and points to `size` writable bytes.
pub(crate) unsafe fn init_sized<T: Copy>(p: *mut T, size: usize, full: T) -> Result<()> {
    if size > isize::MAX as usize {
        return Err(Error::TooLarge(format!("size {size}: no struct has it")));
    }
    if size < FIELD || !size.is_multiple_of(FIELD) {
        return Err(Error::InvalidArgument(format!(
            "size {size}: must be a multiple of 8 and at least 8 (pass sizeof the struct)"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    // SAFETY: `p` has `size` >= n writable bytes (by contract); `full` is a local of at least
    // n bytes; they cannot overlap. The struct_size written is a u64 at offset 0.
    unsafe {
        std::ptr::copy_nonoverlapping(std::ptr::addr_of!(full).cast::<u8>(), p.cast::<u8>(), n);
        p.cast::<u64>().write_unaligned(n as u64);
    }
    Ok(())
}

/// A u64 field that the library keeps in a narrower type; a value that does not fit is
/// `InvalidArgument`, never truncated.
pub(crate) fn narrow<N: TryFrom<u64>>(v: u64, name: &str) -> Result<N> {
    N::try_from(v).map_err(|_| Error::InvalidArgument(format!("{name} {v} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Copy, Debug, PartialEq)]
    #[repr(C)]
    struct V2 {
        struct_size: u64,
        a: u64,
        b: u64,
        wide: *const u8,
    }

    #[test]
    fn an_older_shorter_struct_keeps_the_defaults_past_its_size() {
        let defaults = V2 { struct_size: 0, a: 1, b: 2, wide: std::ptr::null() };
        let caller = V2 { struct_size: 16, a: 10, b: 20, wide: 7 as *const u8 };
        // SAFETY: `caller` is a live V2, at least struct_size readable bytes.
        let got = unsafe { read_sized(&caller, defaults) }.unwrap();
        assert_eq!((got.a, got.b, got.wide), (10, 2, std::ptr::null()));
        // SAFETY: NULL is allowed.
        assert_eq!(unsafe { read_sized(std::ptr::null(), defaults) }.unwrap(), defaults);
    }

    #[test]
    fn a_struct_size_inside_a_field_or_too_small_is_refused() {
        let defaults = V2 { struct_size: 0, a: 1, b: 2, wide: std::ptr::null() };
        for bad in [0u64, 4, 12, 20, 28, u64::MAX] {
            let mut caller = V2 { struct_size: bad, a: 10, b: 20, wide: 7 as *const u8 };
            // SAFETY: `caller` is a live V2; only min(struct_size, sizeof) bytes are read.
            assert!(unsafe { read_sized(&caller, defaults) }.is_err(), "read, size {bad}");
            // SAFETY: as above, writable.
            assert!(unsafe { SizedOut::new(&mut caller, "out") }.is_err(), "write, size {bad}");
            assert_eq!(caller.a, 10, "a refused output is not written");
        }
        let mut only_size = V2 { struct_size: 8, a: 10, b: 20, wide: std::ptr::null() };
        // SAFETY: as above.
        assert!(unsafe { SizedOut::new(&mut only_size, "out") }.is_err(), "an output that asks for nothing");
    }

    #[test]
    fn an_output_is_written_up_to_the_callers_size() {
        let full = V2 { struct_size: 99, a: 1, b: 2, wide: 3 as *const u8 };
        let mut caller = V2 { struct_size: 16, a: 10, b: 20, wide: std::ptr::null() };
        // SAFETY: `caller` is a live, writable V2.
        unsafe { SizedOut::new(&mut caller, "out") }.unwrap().write(full);
        assert_eq!(caller, V2 { struct_size: 16, a: 1, b: 20, wide: std::ptr::null() });
        caller.struct_size = 64; // a newer header's larger struct: ours is written whole
                                 // SAFETY: as above; only sizeof(V2) bytes are written.
        unsafe { SizedOut::new(&mut caller, "out") }.unwrap().write(full);
        assert_eq!(caller, V2 { struct_size: 64, a: 1, b: 2, wide: 3 as *const u8 });
    }

    /// `write_with` writes what `write` writes, whether the caller's struct is this header's
    /// (the typed write), shorter, longer, or not aligned (the byte copy).
    #[test]
    fn write_with_writes_as_write_does_for_every_size_and_alignment() {
        let full = V2 { struct_size: 99, a: 1, b: 2, wide: 3 as *const u8 };
        for size in [16u64, 24, 32, 64] {
            let mut by_write = V2 { struct_size: size, a: 10, b: 20, wide: std::ptr::null() };
            let mut by_with = by_write;
            // SAFETY: both are live, writable V2s.
            unsafe { SizedOut::new(&mut by_write, "out") }.unwrap().write(full);
            // SAFETY: as above.
            unsafe { SizedOut::new(&mut by_with, "out") }.unwrap().write_with(|| full);
            assert_eq!(by_with, by_write, "struct_size {size}");
            assert_eq!(by_with.struct_size, size, "the caller's struct_size is kept");
        }
        // A V2 at an odd address inside a byte buffer.
        let mut buf = [0u8; std::mem::size_of::<V2>() + 8];
        let at = buf.as_mut_ptr().wrapping_add(4).cast::<V2>();
        let caller = V2 { struct_size: 32, a: 10, b: 20, wide: std::ptr::null() };
        // SAFETY: `at` has size_of::<V2>() writable bytes inside `buf`; unaligned access only.
        unsafe { at.write_unaligned(caller) };
        // SAFETY: as above.
        unsafe { SizedOut::new(at, "out") }.unwrap().write_with(|| full);
        // SAFETY: as above.
        let got = unsafe { at.read_unaligned() };
        assert_eq!(got, V2 { struct_size: 32, a: 1, b: 2, wide: 3 as *const u8 });
    }

    /// The convention holds for every struct in the generated header, so no struct needs a
    /// table of field offsets: each starts with a u64 struct_size and has 8-byte fields only.
    #[test]
    fn every_struct_in_the_header_follows_the_convention() {
        let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/pcore.h")).unwrap();
        let wide = ["uint64_t ", "int64_t ", "double ", "size_t ", "PcoreCompareFn "];
        let mut structs = 0;
        for block in header.split("typedef struct ").skip(1) {
            let Some((name, body)) = block.split_once(" {\n") else { continue }; // an opaque handle
            let body = &body[..body.find("\n} ").expect("the struct's end")];
            let fields: Vec<&str> =
                body.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with("//")).collect();
            if name != "PcoreBytes" && name != "PcoreNodeBytes" {
                assert_eq!(fields.first(), Some(&"uint64_t struct_size;"), "{name} starts with its struct_size");
            }
            for f in &fields {
                assert!(wide.iter().any(|t| f.starts_with(t)) || f.contains(" *"), "{name}: {f} is not 8 bytes wide");
            }
            structs += 1;
        }
        assert!(structs >= 9, "found {structs} structs");
    }
}
