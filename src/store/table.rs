//! The object table: one slot per handle, saying where the node's bytes are and in which state.
//!
//! Per handle: FREE -> RESERVED (allocated, never committed) -> LIVE (committed) -> FREE.
//! A LIVE node changed since the last commit has a shadow block; its committed block is kept
//! in `shadowed` until the commit that replaces it is durable.

use super::handle_list::HandleList;
use super::handle_map::HandleMap;
use super::node_id::{next_tag, NodeId};
use super::seal::Seals;
use crate::alloc::Loc;
use crate::error::{Error, Result};
use crate::limits::HANDLE_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Free,
    Reserved,
    Live,
}

/// Where recovery finds the bytes of a node's committed version (docs/LOG.md): what decides
/// whether the next version may be logged as a delta against it, and when its block, once
/// replaced, may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Origin {
    /// In its block as the last checkpoint flushed it (or never committed).
    Checkpoint,
    /// In the log since the last checkpoint (whole or as a delta): replay rebuilds it.
    Logged,
    /// Only in its block, synced at its commit (a payload too large to log).
    Synced,
}

/// A slot: 20 bytes, so ten million nodes take 200 MB of memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Slot {
    pub block: u32,
    pub len: u32,
    /// CRC32C of the committed payload; meaningful for a LIVE slot that is not dirty (a dirty
    /// one's committed bytes, and their checksum, are in `shadowed`).
    pub crc: u32,
    pub tag: u16,
    pub kind: u8,
    pub class: u8,
    pub state: State,
    /// In the dirty list: something to log at the next commit.
    pub dirty: bool,
    /// A LIVE node freed since the last commit: invisible now, freed durably at commit.
    pub freeing: bool,
    /// Of the committed version.
    pub origin: Origin,
}

impl Slot {
    pub const EMPTY: Slot = Slot {
        block: 0,
        len: 0,
        crc: 0,
        tag: 0,
        kind: 0,
        class: 0,
        state: State::Free,
        dirty: false,
        freeing: false,
        origin: Origin::Checkpoint,
    };

    /// A node allocated (or restored by a backup) and not yet committed, in block `loc`.
    pub fn reserved(loc: Loc, len: u32, tag: u16, kind: u8) -> Slot {
        Slot {
            block: loc.block,
            len,
            crc: 0,
            tag,
            kind,
            class: loc.class,
            state: State::Reserved,
            dirty: false,
            freeing: false,
            origin: Origin::Checkpoint,
        }
    }

    #[inline]
    pub fn loc(&self) -> Loc {
        Loc { class: self.class, block: self.block }
    }

    pub fn set_loc(&mut self, loc: Loc) {
        self.class = loc.class;
        self.block = loc.block;
    }

    /// Visible to reads and writes: reserved, or live and not being freed.
    #[inline]
    pub fn visible(&self) -> bool {
        match self.state {
            State::Free => false,
            State::Reserved => true,
            State::Live => !self.freeing,
        }
    }
}

/// The committed version of a node that has a shadow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Committed {
    pub loc: Loc,
    pub len: u32,
    pub crc: u32,
}

pub(crate) struct ObjectTable {
    pub slots: Vec<Slot>,
    free_handles: Vec<u64>,
    pub shadowed: HandleMap<Committed>,
    /// Free handles given a new tag since the last checkpoint: it writes their tags, so an id
    /// handed out and dropped before any commit stays stale after a reopen. Each once: a host
    /// that allocates and frees without a checkpoint retags the same few handles again and
    /// again (sorting the list now and then instead cost 60 ns a pair with 10,000 handles in
    /// turn).
    pub retagged: HandleList,
    /// Group checksums and which committed CRCs are not known yet (`seal.rs`).
    pub seals: Seals,
}

impl ObjectTable {
    pub fn new() -> ObjectTable {
        // Handle 0 is never issued.
        ObjectTable {
            slots: vec![Slot::EMPTY],
            free_handles: Vec::new(),
            shadowed: HandleMap::default(),
            retagged: HandleList::default(),
            seals: Seals::default(),
        }
    }

    /// After loading slots from disk: every free handle becomes reusable, lowest first.
    pub fn rebuild_free_list(&mut self) {
        self.free_handles =
            (1..self.slots.len() as u64).rev().filter(|&h| self.slots[h as usize].state == State::Free).collect();
    }

    /// `rebuild_free_list`, and the live slots' count and the handles whose committed
    /// version's origin is not `Checkpoint`, in one pass: an open looks at every slot, and
    /// each pass over ten million of them costs ~20 ms.
    pub fn rebuild_after_load(&mut self) -> (u64, Vec<u64>) {
        let (mut live, mut changed) = (0u64, Vec::new());
        self.free_handles.clear();
        for (h, s) in self.slots.iter().enumerate().skip(1) {
            match s.state {
                State::Free => self.free_handles.push(h as u64),
                State::Live => live += 1,
                State::Reserved => {}
            }
            if s.origin != Origin::Checkpoint {
                changed.push(h as u64);
            }
        }
        self.free_handles.reverse();
        (live, changed)
    }

    /// A handle for a new node, with a tag no earlier id of that handle had.
    #[inline]
    pub fn take_handle(&mut self) -> Result<u64> {
        if let Some(h) = self.free_handles.pop() {
            let slot = &mut self.slots[h as usize];
            slot.tag = next_tag(slot.tag);
            self.retagged.insert(h);
            return Ok(h);
        }
        self.new_handle()
    }

    /// A handle never used before: the table grows by a slot.
    #[inline(never)]
    fn new_handle(&mut self) -> Result<u64> {
        let h = self.slots.len() as u64;
        if h > HANDLE_MAX {
            return Err(Error::Limit(format!("all {HANDLE_MAX} node handles are in use")));
        }
        self.slots.push(Slot { tag: 1, ..Slot::EMPTY });
        Ok(h)
    }

    /// Empties the list of retagged handles (a checkpoint has written their tags).
    pub fn clear_retagged(&mut self) {
        self.retagged.clear();
    }

    /// Gives a handle back (its slot already marked FREE); its tag changes on reuse.
    #[inline]
    pub fn release_handle(&mut self, handle: u64) {
        debug_assert_eq!(self.slots[handle as usize].state, State::Free);
        self.free_handles.push(handle);
    }

    /// The slot of a visible node with this exact id, or `NotFound`.
    #[inline]
    pub fn resolve(&self, id: NodeId) -> Result<u64> {
        let h = id.handle();
        match self.slots.get(h as usize) {
            Some(s) if h != 0 && s.tag == id.tag() && s.visible() => Ok(h),
            _ => Err(unknown_node(id)),
        }
    }

    /// Like `resolve`, but a node freed with this very id is `DoubleFree`.
    #[inline]
    pub fn resolve_for_free(&self, id: NodeId) -> Result<u64> {
        let h = id.handle();
        match self.slots.get(h as usize) {
            Some(s) if h != 0 && s.tag == id.tag() => {
                if s.visible() {
                    Ok(h)
                } else {
                    Err(double_free(id))
                }
            }
            _ => Err(unknown_node(id)),
        }
    }

    pub fn id_of(&self, handle: u64) -> NodeId {
        NodeId::from_parts(handle, self.slots[handle as usize].tag)
    }

    /// The committed version of a LIVE node (its shadow's origin, or the slot itself).
    pub fn committed(&self, handle: u64) -> Option<Committed> {
        let s = &self.slots[handle as usize];
        if s.state != State::Live {
            return None;
        }
        Some(self.shadowed.get(&handle).copied().unwrap_or(Committed { loc: s.loc(), len: s.len, crc: s.crc }))
    }

    pub fn handle_count(&self) -> u64 {
        self.slots.len() as u64
    }
}

#[cold]
#[inline(never)]
fn double_free(id: NodeId) -> Error {
    Error::DoubleFree(format!("node {id} is already freed"))
}

#[cold]
#[inline(never)]
pub(crate) fn unknown_node(id: NodeId) -> Error {
    Error::NotFound(format!("node {id} is unknown, freed or stale"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reused_handles_get_new_tags_and_old_ids_go_stale() {
        let mut t = ObjectTable::new();
        let h = t.take_handle().unwrap();
        assert_eq!(h, 1);
        t.slots[1].state = State::Reserved;
        let old = t.id_of(1);
        assert_eq!(t.resolve(old).unwrap(), 1);
        t.slots[1].state = State::Free;
        assert!(matches!(t.resolve_for_free(old), Err(Error::DoubleFree(_))));
        t.release_handle(1);
        assert_eq!(t.take_handle().unwrap(), 1);
        t.slots[1].state = State::Reserved;
        assert!(matches!(t.resolve(old), Err(Error::NotFound(_))));
        assert!(matches!(t.resolve_for_free(old), Err(Error::NotFound(_))));
        assert!(t.resolve(NodeId::NONE).is_err());
        assert!(t.resolve(NodeId::INVALID).is_err());
    }

    /// A host that allocates and frees without a checkpoint does not grow the list of retagged
    /// handles by one entry a pair; every retagged handle stays listed once.
    #[test]
    fn handles_reused_between_checkpoints_are_listed_once_each() {
        let mut t = ObjectTable::new();
        let handles: Vec<u64> = (0..3).map(|_| t.take_handle().unwrap()).collect();
        for _ in 0..100_000 {
            for &h in &handles {
                t.slots[h as usize].state = State::Free;
                t.release_handle(h);
            }
            for _ in &handles {
                let h = t.take_handle().unwrap();
                t.slots[h as usize].state = State::Reserved;
            }
        }
        let mut listed = t.retagged.to_vec();
        listed.sort_unstable();
        assert_eq!(listed, handles, "each retagged handle listed once");
        t.clear_retagged();
        assert!(t.retagged.is_empty());
        t.slots[handles[0] as usize].state = State::Free;
        t.release_handle(handles[0]);
        assert_eq!(t.take_handle().unwrap(), handles[0]);
        assert_eq!(*t.retagged, [handles[0]], "listed again after the list was emptied");
    }
}
