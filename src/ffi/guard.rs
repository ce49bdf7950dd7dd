//! The panic boundary, the per-thread last error, and argument checks shared by all exports.

use crate::error::{Error, Result, Status};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: String) {
    // Interior NULs are replaced, so this cannot fail; an empty message would do if it did.
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Pointer to this thread's last error message; valid until the next failing call here.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// Runs an export's body: its error becomes a status and this thread's message; a panic
/// becomes `PCORE_PANIC` and never unwinds into the host. Inlined, with the failures' work out
/// of line: a cursor's step costs little more than this.
#[inline]
pub(crate) fn call(f: impl FnOnce() -> Result<()>) -> i32 {
    // The error becomes its status inside the boundary: only an i32 crosses it, not the
    // `Result` (a cursor's step then moves no error-sized value on its way out).
    call_status(|| status(f()))
}

/// As `call`, for a body that makes its status itself (with `status`) inside a function that
/// is not inlined: it returns an i32 in a register, where a `Result` is returned through
/// memory and copied out of it whole, with loads that straddle the callee's narrower stores
/// and miss store forwarding (a third of the handle lookup's time in an allocate+free).
#[inline]
pub(crate) fn call_status(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(panicked)
}

/// A body's result as the status the export returns; an error also becomes this thread's
/// message.
#[inline]
pub(crate) fn status(r: Result<()>) -> i32 {
    match r {
        Ok(()) => Status::Ok as i32,
        Err(e) => failed(e),
    }
}

#[cold]
#[inline(never)]
fn failed(e: Error) -> i32 {
    set_last_error(e.to_string());
    e.status() as i32
}

#[cold]
#[inline(never)]
fn panicked(payload: Box<dyn std::any::Any + Send>) -> i32 {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    set_last_error(format!("panic inside pcore (a bug; please report): {what}"));
    Status::Panic as i32
}

/// Fails with `InvalidArgument` when `p` is null.
#[inline(always)]
pub(crate) fn non_null<T>(p: *const T, name: &str) -> Result<()> {
    if p.is_null() {
        return Err(null_argument(name));
    }
    Ok(())
}

#[cold]
#[inline(never)]
fn null_argument(name: &str) -> Error {
    Error::InvalidArgument(format!("{name} is NULL"))
}

/// `len` bytes at `data` as a slice: NULL is allowed only with length 0.
///
/// # Safety
/// When non-null, `data` must point to `len` readable bytes that stay unchanged during the call.
pub(crate) unsafe fn bytes<'a>(data: *const u8, len: usize, name: &str) -> Result<&'a [u8]> {
    if len > isize::MAX as usize {
        return Err(Error::TooLarge(format!("{name}: length {len}")));
    }
    if data.is_null() {
        return if len == 0 {
            Ok(&[])
        } else {
            Err(Error::InvalidArgument(format!("{name} is NULL with length {len}")))
        };
    }
    // SAFETY: non-null and `len` readable bytes by the caller's contract (documented on each
    // export); the length fits isize (checked above).
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// A NUL-terminated path.
///
/// # Safety
/// `p` must be null or point to a NUL-terminated string.
pub(crate) unsafe fn c_path(p: *const c_char, name: &str) -> Result<std::path::PathBuf> {
    non_null(p, name)?;
    // SAFETY: non-null (checked) and NUL-terminated by the caller's contract.
    let s = unsafe { CStr::from_ptr(p) };
    use std::os::unix::ffi::OsStrExt;
    if s.to_bytes().is_empty() {
        return Err(Error::InvalidArgument(format!("{name} is empty")));
    }
    Ok(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(s.to_bytes())))
}

/// `TooLarge` for a capacity no buffer can have (over `isize::MAX`, as for input lengths:
/// a slice that long is undefined behaviour), `InvalidArgument` for an output buffer that is
/// NULL but claims capacity.
pub(crate) fn out_buffer(buf: *mut c_void, cap: usize, name: &str) -> Result<()> {
    if cap > isize::MAX as usize {
        return Err(Error::TooLarge(format!("{name}: capacity {cap}")));
    }
    if buf.is_null() && cap > 0 {
        return Err(Error::InvalidArgument(format!("{name} is NULL with a capacity of {cap}")));
    }
    Ok(())
}

/// Copies as much of `v` as fits `cap` into `buf` and, when `out_len` is not NULL, stores
/// `v`'s full length there (so the caller learns the size it needs).
///
/// `v` may lie in the store's mapping (a value read in place): a host that passes a buffer
/// inside it breaks the export's contract, but the copy (a memmove) stays defined.
///
/// # Safety
/// `buf` has `cap` writable bytes (or `cap` is 0); `out_len` is NULL or writable.
pub(crate) unsafe fn copy_out(v: &[u8], buf: *mut c_void, cap: usize, out_len: *mut usize) {
    let n = v.len().min(cap);
    if n > 0 {
        // SAFETY: per this function's contract; `copy` allows overlap.
        unsafe { std::ptr::copy(v.as_ptr(), buf.cast::<u8>(), n) };
    }
    if !out_len.is_null() {
        // SAFETY: per this function's contract.
        unsafe { write_out(out_len, v.len()) };
    }
}

/// Writes an output. Callers check `p` for null before doing any work, so outputs are
/// written only on success.
///
/// # Safety
/// `p` must be non-null (checked by the caller) and point to writable memory for a `T`.
pub(crate) unsafe fn write_out<T>(p: *mut T, v: T) {
    debug_assert!(!p.is_null());
    // SAFETY: non-null and writable by the caller's contract; `write` does not read or drop
    // the old (possibly uninitialized) value.
    unsafe { p.write(v) }
}

/// Writes an optional output: nothing when `p` is NULL.
///
/// # Safety
/// `p` is NULL or points to writable memory for a `T`.
pub(crate) unsafe fn write_optional<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-null; writable by the caller's contract.
        unsafe { write_out(p, v) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_and_panics_become_statuses_and_messages() {
        assert_eq!(call(|| Ok(())), 0);
        assert_eq!(call(|| Err(Error::NotFound("node 7".into()))), Status::NotFound as i32);
        // SAFETY: the pointer is this thread's message, read before any other pcore call.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned();
        assert!(msg.contains("node 7"), "{msg}");
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let status = call(|| panic!("boom"));
        std::panic::set_hook(prev);
        assert_eq!(status, Status::Panic as i32);
        // SAFETY: as above.
        let msg = unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned();
        assert!(msg.contains("boom"), "{msg}");
    }
}
