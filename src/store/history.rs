//! The versions of nodes that open snapshots may still read.
//!
//! The object table says where each node's latest committed version is. A snapshot of an
//! older commit needs the versions that were current then: while any snapshot is open, each
//! commit records, for every node it changes, the version it replaces (or that the node did
//! not exist). A snapshot of epoch S reading handle h takes the first record of h made by a
//! commit after S; without one, the table's committed version is S's too. Records no open
//! snapshot can need are dropped oldest first. The blocks of recorded versions are kept from
//! reuse by the same rule (see `Core::release_frees`), so the bytes stay where they are.

use super::handle_map::HandleMap;
use crate::alloc::Loc;
use std::collections::VecDeque;

/// A committed version of a node: enough to check an id against it and read its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    pub tag: u16,
    pub kind: u8,
    pub loc: Loc,
    pub len: u32,
    pub crc: u32,
}

#[derive(Default)]
pub(crate) struct History {
    /// Per handle, oldest first: (epoch of the commit that replaced it, the version before
    /// that commit; `None`: there was no node).
    replaced: HandleMap<Vec<(u64, Option<Version>)>>,
    /// The handles each commit recorded, oldest commit first: the order records are dropped in.
    by_commit: VecDeque<(u64, Vec<u64>)>,
}

impl History {
    /// Records what commit `epoch` replaced.
    pub fn record(&mut self, epoch: u64, changes: Vec<(u64, Option<Version>)>) {
        if changes.is_empty() {
            return;
        }
        let handles = changes.iter().map(|&(h, _)| h).collect();
        for (handle, before) in changes {
            self.replaced.entry(handle).or_default().push((epoch, before));
        }
        self.by_commit.push_back((epoch, handles));
    }

    /// What a snapshot of `epoch` sees of `handle`, when a later commit changed it: the
    /// version then (`Some(None)`: no node). `None`: the table's committed version.
    #[inline]
    pub fn at(&self, handle: u64, epoch: u64) -> Option<Option<Version>> {
        if self.replaced.is_empty() {
            return None;
        }
        let records = self.replaced.get(&handle)?;
        records.iter().find(|&&(replaced_at, _)| replaced_at > epoch).map(|&(_, v)| v)
    }

    /// Drops the records no snapshot of `oldest` or later needs (`None`: no snapshot is open).
    pub fn prune(&mut self, oldest: Option<u64>) {
        let Some(oldest) = oldest else {
            self.replaced.clear();
            self.by_commit.clear();
            return;
        };
        while self.by_commit.front().is_some_and(|&(epoch, _)| epoch <= oldest) {
            let Some((_, handles)) = self.by_commit.pop_front() else { break };
            for h in handles {
                if let Some(records) = self.replaced.get_mut(&h) {
                    records.remove(0);
                    if records.is_empty() {
                        self.replaced.remove(&h);
                    }
                }
            }
        }
    }

    /// Versions recorded, for statistics.
    pub fn len(&self) -> usize {
        self.replaced.values().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(block: u32) -> Option<Version> {
        Some(Version { tag: 1, kind: 1, loc: Loc { class: 0, block }, len: 8, crc: 0 })
    }

    #[test]
    fn a_snapshot_sees_the_version_before_the_first_later_change() {
        let mut h = History::default();
        h.record(5, vec![(1, v(10)), (2, None)]);
        h.record(7, vec![(1, v(11))]);
        assert_eq!(h.at(1, 4), Some(v(10)));
        assert_eq!(h.at(1, 5), Some(v(11)));
        assert_eq!(h.at(1, 7), None, "the table's version");
        assert_eq!(h.at(2, 4), Some(None), "born after the snapshot");
        assert_eq!(h.at(3, 0), None);
        h.prune(Some(5));
        assert_eq!(h.at(1, 5), Some(v(11)));
        assert_eq!(h.at(2, 4), None, "no snapshot of 4 is left to ask");
        assert_eq!(h.len(), 1);
        h.prune(None);
        assert_eq!(h.len(), 0);
    }
}
