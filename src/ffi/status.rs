//! The C ABI's statuses: the `PCORE_*` constants and [`Status`], both expanded from
//! `status_list.rs`, which build.rs also expands into the constants of include/pcore.h. So a
//! status's number, its name (`pcore_status_name`) and its meaning are written once.

use std::ffi::CStr;

/// `bytes` (NUL-terminated) as a C string, at compile time.
const fn c_str(bytes: &'static [u8]) -> &'static CStr {
    match CStr::from_bytes_with_nul(bytes) {
        Ok(s) => s,
        Err(_) => panic!("a status name holds a NUL"),
    }
}

macro_rules! pcore_statuses {
    ($($(#[doc = $doc:literal])+ $name:ident = $code:literal => $variant:ident,)+) => {
        $($(#[doc = $doc])+ pub const $name: i32 = $code;)+

        /// A status of the C ABI as a Rust value: `status as i32` is its number.
        #[repr(i32)]
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Status {
            $($(#[doc = $doc])+ $variant = $code,)+
        }

        impl Status {
            /// Every status, in the order of the list (numeric order).
            pub const ALL: [Status; [$($code),+].len()] = [$(Status::$variant),+];

            pub fn from_code(code: i32) -> Option<Status> {
                match code {
                    $($code => Some(Status::$variant),)+
                    _ => None,
                }
            }

            /// The constant's name as the C header spells it ("PCORE_NOT_FOUND").
            pub fn name(self) -> &'static str {
                match self {
                    $(Status::$variant => stringify!($name),)+
                }
            }

            /// [`Status::name`] as a static C string (for `pcore_status_name`).
            pub fn c_name(self) -> &'static CStr {
                match self {
                    $(Status::$variant => {
                        const NAME: &CStr = c_str(concat!(stringify!($name), "\0").as_bytes());
                        NAME
                    })+
                }
            }
        }
    };
}

include!("status_list.rs");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_numbers_are_their_index() {
        for (i, s) in Status::ALL.iter().enumerate() {
            assert_eq!(*s as i32, i as i32, "{}: numbers are dense and in order", s.name());
            assert_eq!(Status::from_code(i as i32), Some(*s));
            assert_eq!(s.c_name().to_str().unwrap(), s.name());
        }
        assert_eq!(Status::from_code(-1), None);
        assert_eq!(Status::from_code(Status::ALL.len() as i32), None);
    }

    /// The committed header is generated from the same list: every status is there with its
    /// number.
    #[test]
    fn the_header_lists_every_status_with_its_number() {
        let header = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/include/pcore.h")).unwrap();
        for s in Status::ALL {
            let line = format!("#define {} {}\n", s.name(), s as i32);
            assert!(header.contains(&line), "include/pcore.h lacks {line:?}");
        }
    }
}
