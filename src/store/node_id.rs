//! Node ids: `handle << 16 | tag`, XTree's layout. Raw 0 is "no node"; `u64::MAX` is invalid.

use std::fmt;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(u64);

impl NodeId {
    pub const NONE: NodeId = NodeId(0);
    pub const INVALID: NodeId = NodeId(u64::MAX);

    pub fn from_raw(raw: u64) -> NodeId {
        NodeId(raw)
    }

    pub(crate) fn from_parts(handle: u64, tag: u16) -> NodeId {
        debug_assert!(handle < 1 << 48 && tag != 0);
        NodeId(handle << 16 | u64::from(tag))
    }

    pub fn raw(self) -> u64 {
        self.0
    }

    #[inline]
    pub fn handle(self) -> u64 {
        self.0 >> 16
    }

    #[inline]
    pub fn tag(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({}:{})", self.handle(), self.tag())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} (handle {}, tag {})", self.0, self.handle(), self.tag())
    }
}

/// The next tag for a reused handle: changes on every reuse and skips 0.
pub(crate) fn next_tag(tag: u16) -> u16 {
    match tag.wrapping_add(1) {
        0 => 1,
        t => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_and_tags_skip_zero() {
        let id = NodeId::from_parts(0xABCDEF, 7);
        assert_eq!((id.handle(), id.tag()), (0xABCDEF, 7));
        assert_eq!(next_tag(u16::MAX), 1);
        assert_eq!(next_tag(1), 2);
    }
}
