//! Version and status text.

use super::guard::last_error_ptr;
use super::types::PCORE_ABI_VERSION;
use crate::error::Status;
use std::ffi::c_char;

/// The ABI version of the loaded library: major << 16 | minor. A host built against
/// `PCORE_ABI_VERSION` works with any library of the same major version and a minor version
/// at least its own. Never fails; thread-safe.
#[no_mangle]
pub extern "C" fn pcore_abi_version() -> u32 {
    PCORE_ABI_VERSION
}

/// The name of a status, as the constant is spelled ("PCORE_NOT_FOUND"), or
/// "PCORE_UNKNOWN_STATUS". The string is static: never freed, never NULL. Thread-safe.
#[no_mangle]
pub extern "C" fn pcore_status_name(status: i32) -> *const c_char {
    match Status::from_code(status) {
        Some(s) => s.c_name().as_ptr(),
        None => c"PCORE_UNKNOWN_STATUS".as_ptr(),
    }
}

/// The message of the most recent failed pcore call on this thread ("" if none failed yet).
/// Owned by pcore: valid until the next failing pcore call on this thread; copy it to keep it.
#[no_mangle]
pub extern "C" fn pcore_last_error_message() -> *const c_char {
    last_error_ptr()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_match_status_name() {
        for s in Status::ALL {
            // SAFETY: pcore_status_name returns a static NUL-terminated string.
            let name = unsafe { std::ffi::CStr::from_ptr(pcore_status_name(s as i32)) };
            assert_eq!(name.to_str().unwrap(), s.name());
        }
    }
}
