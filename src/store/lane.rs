//! The allocation lane: allocate and free of new nodes without the store's state lock.
//!
//! A store keeps, per size class, a stock of (handle, zeroed block) pairs it took from the
//! object table and the allocator under the state lock, a batch at a time. `allocate` hands
//! one out; `free` of a node handed out since the state lock was last taken puts it back
//! (zeroed again, its handle's tag moved on, so the freed id goes stale). Each call takes the
//! lane with one compare-and-swap and gives it back with one store: no lock, no reference
//! count, no object-table work.
//!
//! The object table never sees a half-done lane. Whoever takes the state lock first brings
//! it up to date: a node call (`Store::mutate`, `read_state`) folds the handed-out nodes into
//! the table as RESERVED nodes, exactly as `Core::allocate` makes them; everything else (commit,
//! abort, checkpoint, stats, verify, close, compaction) also drains the stock back to the
//! table and the allocator. So commits, aborts, snapshots, recovery and every count see the
//! store as if each call had taken the lock, and a stocked block is never counted as live nor
//! kept in a file past a close (an open rebuilds the allocator from the table, where stocked
//! handles are free).
//!
//! The fast path only moves pairs between the stock and the handed-out set; only the state
//! lock's holder adds to or empties the lane. So a holder that finds the lane empty (`flags`)
//! keeps finding it empty until it lets go.

use super::core::Core;
use super::handle_map::HandleMap;
use super::node_id::{next_tag, prev_tag, NodeId};
use crate::alloc::Loc;
use crate::error::Result;
use crate::os::{OwnedBlock, SpinCell, SpinGuard};
use std::sync::atomic::{AtomicU8, Ordering};

/// `Lane::flags`: some node was handed out and is not in the table yet.
const HANDED: u8 = 1;
/// `Lane::flags`: some pair waits in the stock.
const STOCKED: u8 = 2;

/// A refill takes about this many bytes of blocks (at most `REFILL_MAX` pairs, at least one):
/// enough 64-byte pairs that a refill's lock is spread over many calls, few large blocks to
/// zero and give back unused at the next commit.
const REFILL_BYTES: usize = 4 << 10;
const REFILL_MAX: usize = 64;

#[derive(Debug, Clone, Copy)]
struct Pair {
    handle: u64,
    /// In the stock: the tag its next id gets. Handed out: its id's tag.
    tag: u16,
    kind: u8,
    loc: Loc,
    block: OwnedBlock,
}

pub(crate) struct Lane {
    stock: SpinCell<Stock>,
    /// HANDED | STOCKED, stored by each holder of `stock` as it lets go: tells a holder of the
    /// state lock whether it has anything to fold or drain without taking the lane.
    flags: AtomicU8,
}

struct Stock {
    /// Block bytes per class (the store's size classes, fixed at open).
    class_bytes: Vec<u32>,
    free: Vec<Vec<Pair>>,
    stocked: usize,
    handed: HandleMap<Pair>,
}

/// The lane, held: see `Lane::try_lock`.
pub(crate) struct LaneGuard<'a> {
    flags: &'a AtomicU8,
    stock: SpinGuard<'a, Stock>,
}

impl Lane {
    pub(crate) fn new(class_bytes: Vec<u32>) -> Lane {
        let free = class_bytes.iter().map(|_| Vec::new()).collect();
        Lane {
            stock: SpinCell::new(Stock { class_bytes, free, stocked: 0, handed: HandleMap::default() }),
            flags: AtomicU8::new(0),
        }
    }

    /// The lane, unless another thread is in it now (then the caller takes the state lock).
    #[inline]
    pub(crate) fn try_lock(&self) -> Option<LaneGuard<'_>> {
        self.stock.try_lock().map(|stock| LaneGuard { flags: &self.flags, stock })
    }

    /// The lane, waiting for the thread in it. Only under the state lock, held exclusively.
    pub(crate) fn lock(&self) -> LaneGuard<'_> {
        LaneGuard { flags: &self.flags, stock: self.stock.lock() }
    }

    /// Some handed-out node is not in the table yet: a reader must fold first.
    #[inline]
    pub(crate) fn has_handed(&self) -> bool {
        self.flags.load(Ordering::Acquire) & HANDED != 0
    }

    /// Nothing handed out or stocked: the table and allocator are the whole truth.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.flags.load(Ordering::Acquire) == 0
    }
}

impl LaneGuard<'_> {
    /// A stocked pair of the smallest class holding `min_len`, handed out as a node of `kind`:
    /// its id, block address and capacity. `None` when that class's stock is empty (or no
    /// class holds `min_len`): the caller refills under the state lock.
    #[inline]
    pub(crate) fn hand_out(&mut self, min_len: usize, kind: u8) -> Option<(NodeId, usize, usize)> {
        let s = &mut *self.stock;
        let class = s.class_bytes.iter().position(|&b| b as usize >= min_len)?;
        let mut pair = s.free[class].pop()?;
        s.stocked -= 1;
        pair.kind = kind;
        s.handed.insert(pair.handle, pair);
        Some((NodeId::from_parts(pair.handle, pair.tag), pair.block.addr(), pair.block.len()))
    }

    /// Takes back node `id` if the lane handed it out and the table has not seen it yet: its
    /// block is zeroed and stocked again, under a new tag. False for any other id (the caller
    /// frees it under the state lock, which refuses a stale or unknown one).
    #[inline]
    pub(crate) fn take_back(&mut self, id: NodeId) -> bool {
        let s = &mut *self.stock;
        let Some(pair) = s.handed.get(&id.handle()).copied() else { return false };
        if pair.tag != id.tag() {
            return false;
        }
        s.handed.remove(&id.handle());
        pair.block.zero();
        s.free[pair.loc.class as usize].push(Pair { tag: next_tag(pair.tag), ..pair });
        s.stocked += 1;
        true
    }

    /// Stocks about `REFILL_BYTES` of pairs of `class` from the table and the allocator (at
    /// least one, or the allocator's error). Under the state lock.
    pub(crate) fn refill(&mut self, core: &mut Core, class: u8) -> Result<()> {
        let s = &mut *self.stock;
        let want = (REFILL_BYTES / s.class_bytes[class as usize] as usize).clamp(1, REFILL_MAX);
        let before = s.free[class as usize].len();
        let taken = Self::take(s, core, class, want);
        // Handed out (popped) in the order the allocator and the table gave them, as without
        // the lane: the block freed last and the lowest free handle first.
        s.free[class as usize][before..].reverse();
        taken
    }

    fn take(s: &mut Stock, core: &mut Core, class: u8, want: usize) -> Result<()> {
        for i in 0..want {
            match core.take_for_lane(class) {
                Ok((handle, tag, loc)) => {
                    let block = core.space.owned_block(loc);
                    s.free[class as usize].push(Pair { handle, tag, kind: 0, loc, block });
                    s.stocked += 1;
                }
                Err(e) if i == 0 => return Err(e),
                Err(_) => break, // what was taken serves; the next refill reports the error
            }
        }
        Ok(())
    }

    /// Makes every handed-out node a RESERVED node of the table. Under the state lock.
    pub(crate) fn fold(&mut self, core: &mut Core) {
        for (_, p) in self.stock.handed.drain() {
            core.adopt_from_lane(p.handle, p.tag, p.loc, p.kind);
        }
    }

    /// `fold`, and gives every stocked pair back to the table and the allocator. Under the
    /// state lock.
    pub(crate) fn drain(&mut self, core: &mut Core) {
        self.fold(core);
        let s = &mut *self.stock;
        for list in &mut s.free {
            for p in list.drain(..) {
                s.stocked -= 1;
                // The slot keeps the tag of the last id issued, as a freed slot does.
                core.return_from_lane(p.handle, prev_tag(p.tag), p.loc);
            }
        }
    }
}

impl Drop for LaneGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        let s = &*self.stock;
        let flags = if s.handed.is_empty() { 0 } else { HANDED } | if s.stocked == 0 { 0 } else { STOCKED };
        // Before `stock` lets go (fields drop after this body): the next holder sees it.
        self.flags.store(flags, Ordering::Relaxed);
    }
}
