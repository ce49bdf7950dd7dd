//! Group checksums (store format 6, docs/LOG.md "Checkpoint bytes ≤ 4 per node"): a
//! checkpoint piece carries one CRC32C per group of `GROUP` consecutive handles instead of
//! one per node, so an open does not know each node's checksum, only its group's.
//!
//! A group's check is the CRC32C of its live members' payload CRC32Cs (4 bytes each, little
//! endian, in handle order), members marked suspect left out. A flipped byte in a member
//! changes that member's CRC, so a 4-byte run of the check's input, which CRC32C always
//! detects: one damaged node is always found, as with a CRC per node, and two cancel with
//! probability 2⁻³².
//!
//! In memory, per group: the check the chain holds (`sealed`), which members' CRCs are not
//! known yet (`unknown`: loaded from pieces, not verified since), and which members are
//! `suspect` (their group failed its check while their CRC was unknown: which member is
//! damaged cannot be told, so each reads as damaged until rewritten). A group with unknown
//! members is verified (every member read, its CRC computed, the check compared) before any
//! member changes (`Core::prepare_commit`, recovery before replay), so while a group has
//! unknown members none has changed since its check was written, and the check still holds.

use super::codec::crc;

/// Handles per group: 4 bytes of check per 8 nodes, half a byte each.
pub(crate) const GROUP: u64 = 8;

/// The group of a handle.
#[inline]
pub(crate) fn group_of(handle: u64) -> usize {
    (handle / GROUP) as usize
}

#[inline]
fn bit(handle: u64) -> u8 {
    1 << (handle % GROUP)
}

/// The check of a group from its members' CRCs (live, not suspect, in handle order).
pub(crate) fn check_of(member_crcs: impl Iterator<Item = u32>) -> u32 {
    let mut buf = [0u8; 4 * GROUP as usize];
    let mut n = 0;
    for c in member_crcs {
        buf[n..n + 4].copy_from_slice(&c.to_le_bytes());
        n += 4;
    }
    crc(&buf[..n])
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Seals {
    /// Per group, the check its newest piece holds: what the group is verified against while
    /// it has unknown members.
    pub sealed: Vec<u32>,
    /// Per group, members whose committed CRC is not known (bit i: handle group × 8 + i).
    pub unknown: Vec<u8>,
    /// Per group, members that read as damaged until rewritten.
    pub suspect: Vec<u8>,
}

impl Seals {
    /// Seals for a table of `handles` handles, every CRC known.
    pub fn with_handles(handles: u64) -> Seals {
        let groups = group_of(handles) + 1;
        Seals { sealed: vec![0; groups], unknown: vec![0; groups], suspect: vec![0; groups] }
    }

    #[inline]
    pub fn is_unknown(&self, handle: u64) -> bool {
        self.unknown.get(group_of(handle)).is_some_and(|m| m & bit(handle) != 0)
    }

    #[inline]
    pub fn is_suspect(&self, handle: u64) -> bool {
        self.suspect.get(group_of(handle)).is_some_and(|m| m & bit(handle) != 0)
    }

    /// True when the group of `handle` has members whose CRC is still to be verified.
    #[inline]
    pub fn group_unverified(&self, handle: u64) -> bool {
        self.unknown.get(group_of(handle)).is_some_and(|&m| m != 0)
    }

    /// A handle as a piece's entry says: live with its CRC unknown, suspect, or neither (free).
    #[inline]
    pub fn load(&mut self, handle: u64, live: bool, suspect: bool) {
        let (g, b) = (group_of(handle), bit(handle));
        let set = |m: &mut u8, on: bool| *m = if on { *m | b } else { *m & !b };
        set(&mut self.unknown[g], live && !suspect);
        set(&mut self.suspect[g], live && suspect);
    }

    /// The handle's committed version is new (its CRC known) or gone.
    #[inline]
    pub fn settle(&mut self, handle: u64) {
        let (g, b) = (group_of(handle), bit(handle));
        if let Some(m) = self.unknown.get_mut(g) {
            *m &= !b;
        }
        if let Some(m) = self.suspect.get_mut(g) {
            *m &= !b;
        }
    }

    /// The group of `handle` was verified (`ok`) or failed: its unknown members become known,
    /// or suspect.
    pub fn verified(&mut self, handle: u64, ok: bool) {
        let g = group_of(handle);
        if !ok {
            self.suspect[g] |= self.unknown[g];
        }
        self.unknown[g] = 0;
    }

    /// The handles of the group of `handle`.
    pub fn members(handle: u64) -> std::ops::Range<u64> {
        let first = handle / GROUP * GROUP;
        first..first + GROUP
    }
}

/// A group's members as their bytes are now, and whether they match the group's check.
pub(crate) struct Verified {
    /// (handle, CRC) of each member the check covers.
    pub members: [(u64, u32); GROUP as usize],
    pub count: usize,
    pub ok: bool,
}

/// Verifies the group of `handle` against its check: `crc_of` gives a handle's committed CRC
/// (computed from its bytes when unknown), `None` for a handle that is not live.
pub(crate) fn verify(seals: &Seals, handle: u64, crc_of: impl Fn(u64) -> Option<u32>) -> Verified {
    let mut v = Verified { members: [(0, 0); GROUP as usize], count: 0, ok: false };
    for h in Seals::members(handle).filter(|&h| !seals.is_suspect(h)) {
        if let Some(c) = crc_of(h) {
            v.members[v.count] = (h, c);
            v.count += 1;
        }
    }
    v.ok = check_of(v.members[..v.count].iter().map(|m| m.1)) == seals.sealed[group_of(handle)];
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_member_crc_always_changes_the_check() {
        let crcs = [0x1234_5678u32, 0x9abc_def0, 0x0f0f_0f0f, 0xdead_beef];
        let base = check_of(crcs.iter().copied());
        for i in 0..crcs.len() {
            for flip in 0..32 {
                let mut c = crcs;
                c[i] ^= 1 << flip;
                assert_ne!(check_of(c.iter().copied()), base, "member {i} bit {flip}");
            }
        }
        assert_ne!(check_of(crcs[..3].iter().copied()), base, "a member left out changes it");
    }

    #[test]
    fn load_settle_verify_track_members() {
        let mut s = Seals::with_handles(20);
        s.load(9, true, false);
        s.load(10, true, true);
        s.load(11, false, false);
        assert!(s.is_unknown(9) && !s.is_unknown(10) && s.is_suspect(10) && !s.is_unknown(11));
        assert!(s.group_unverified(12) && !s.group_unverified(3));
        s.verified(9, false);
        assert!(s.is_suspect(9) && !s.group_unverified(9));
        s.settle(9);
        assert!(!s.is_suspect(9) && s.is_suspect(10));
        assert_eq!(Seals::members(13), 8..16);
    }
}
