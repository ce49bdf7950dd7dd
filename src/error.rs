//! The one error type of pcore, and its one mapping to the C ABI's status numbers.

use std::fmt;
use std::io;

/// Every failure pcore reports. Operating errors (bad input, disk full, damaged files) are
/// values of this type; programmer errors inside pcore are panics, which the C boundary turns
/// into [`Status::Panic`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A null pointer, a zero kind, an option out of range, a bad name.
    InvalidArgument(String),
    /// An unknown, freed or stale node id; an unknown root name.
    NotFound(String),
    /// A length above the largest size class or above a node's capacity.
    TooLarge(String),
    /// A write on a store opened read-only.
    ReadOnly,
    /// The directory is locked by another writer.
    Busy(String),
    /// A damaged file: names the file and the byte offset of the damage.
    Corrupt { file: String, offset: u64, what: String },
    /// The disk is full; nothing was changed.
    NoSpace(String),
    /// Any other I/O failure, with what was being done.
    Io { context: String, source: io::Error },
    /// A node id that was already freed.
    DoubleFree(String),
    /// The store was closed.
    Closed,
    /// A C handle that is null, closed, or of another type.
    BadHandle(String),
    /// An earlier failure left the in-memory state unsure; the store must be reopened.
    Poisoned(String),
    /// A store format or ABI version this build does not read.
    VersionMismatch(String),
    /// A fixed limit was reached (handles, roots, name or metadata length).
    Limit(String),
    /// An internal invariant did not hold (found by `verify`).
    Internal(String),
    /// The key is already in a tree that does not take duplicates.
    DuplicateKey(String),
    /// A cursor used after its tree changed.
    StaleCursor(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Status numbers of the C ABI, from the one list in `src/ffi/status_list.rs`.
pub use crate::ffi::status::Status;

impl Error {
    pub fn status(&self) -> Status {
        match self {
            Error::InvalidArgument(_) => Status::InvalidArgument,
            Error::NotFound(_) => Status::NotFound,
            Error::TooLarge(_) => Status::TooLarge,
            Error::ReadOnly => Status::ReadOnly,
            Error::Busy(_) => Status::Busy,
            Error::Corrupt { .. } => Status::Corrupt,
            Error::NoSpace(_) => Status::NoSpace,
            Error::Io { .. } => Status::IoError,
            Error::DoubleFree(_) => Status::DoubleFree,
            Error::Closed | Error::BadHandle(_) => Status::BadHandle,
            Error::Poisoned(_) => Status::Poisoned,
            Error::VersionMismatch(_) => Status::VersionMismatch,
            Error::Limit(_) => Status::Limit,
            Error::Internal(_) => Status::Internal,
            Error::DuplicateKey(_) => Status::DuplicateKey,
            Error::StaleCursor(_) => Status::StaleCursor,
        }
    }

    /// An I/O error with what was being done; a full disk becomes [`Error::NoSpace`].
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        let context = context.into();
        match source.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => Error::NoSpace(format!("{context}: {source}")),
            _ => Error::Io { context, source },
        }
    }

    pub fn corrupt(file: impl Into<String>, offset: u64, what: impl Into<String>) -> Error {
        Error::Corrupt { file: file.into(), offset, what: what.into() }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(m) => write!(f, "invalid argument: {m}"),
            Error::NotFound(m) => write!(f, "not found: {m}"),
            Error::TooLarge(m) => write!(f, "too large: {m}"),
            Error::ReadOnly => write!(f, "the store is open read-only"),
            Error::Busy(m) => write!(f, "busy: {m}"),
            Error::Corrupt { file, offset, what } => {
                write!(f, "corrupt: {file} at offset {offset}: {what}")
            }
            Error::NoSpace(m) => write!(f, "no space left: {m}"),
            Error::Io { context, source } => write!(f, "I/O error: {context}: {source}"),
            Error::DoubleFree(m) => write!(f, "double free: {m}"),
            Error::Closed => write!(f, "the store is closed"),
            Error::BadHandle(m) => write!(f, "bad handle: {m}"),
            Error::Poisoned(m) => write!(f, "the store must be reopened: {m}"),
            Error::VersionMismatch(m) => write!(f, "version mismatch: {m}"),
            Error::Limit(m) => write!(f, "limit reached: {m}"),
            Error::Internal(m) => write!(f, "internal error: {m}"),
            Error::DuplicateKey(m) => write!(f, "duplicate key: {m}"),
            Error::StaleCursor(m) => write!(f, "stale cursor: {m}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_becomes_no_space() {
        let e = Error::io("grow", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.status(), Status::NoSpace);
        let e = Error::io("grow", io::Error::from_raw_os_error(libc::EIO));
        assert_eq!(e.status(), Status::IoError);
    }
}
