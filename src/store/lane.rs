//! The allocation lane: allocate and free of new nodes without the store's state lock.
//!
//! A store keeps, per size class up to `LANE_MAX_BYTES`, a stock of (handle, block) pairs it
//! took from the object table and the allocator under the state lock, a batch at a time.
//! `allocate` hands one out, zero-filled; `free` of a node handed out since the state lock
//! was last taken puts it back (its handle's tag moved on, so the freed id goes stale; the
//! block is zeroed when next handed out). Each call takes the
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

use super::core::{Core, LaneReturn};
use super::node_id::{next_tag, prev_tag, NodeId};
use crate::alloc::Loc;
use crate::error::Result;
use crate::os::{OwnedBlock, SpinCell, SpinGuard};
use std::sync::atomic::{AtomicU8, Ordering};

/// `Lane::flags`: some node was handed out and is not in the table yet.
const HANDED: u8 = 1;
/// `Lane::flags`: some pair waits in the stock.
const STOCKED: u8 = 2;

/// The largest blocks the lane hands out. Larger ones are allocated under the state lock as
/// before: their zeroing costs more than the lock, and with the lane serving blocks up to
/// 1 KiB, pairs of 256 B-4 KiB took 15-25% longer than with the lock per call (measured:
/// stocks idle in one class while another takes fresh blocks, and each free the lane did
/// not hand out still took the lane and looked the node up).
const LANE_MAX_BYTES: u32 = 256;

/// A refill takes about this many bytes of blocks (at most `REFILL_MAX` pairs, at least one):
/// enough 64-byte pairs that a refill's lock is spread over many calls, few large blocks to
/// zero and give back unused at the next commit.
const REFILL_BYTES: usize = 8 << 10;
const REFILL_MAX: usize = 64;

/// A class's stock holds at most about this many bytes (at least twice a refill, at most
/// `STOCK_MAX` pairs): a host that frees more of a class than it allocates gives the rest back
/// under the state lock (`LaneGuard::release`), so the stock does not grow the store's working
/// set with blocks of one class while another class takes fresh ones.
const STOCK_BYTES: usize = 16 << 10;
const STOCK_MAX: usize = 256;

fn refill_pairs(class_bytes: u32) -> usize {
    (REFILL_BYTES / class_bytes as usize).clamp(1, REFILL_MAX)
}

fn stock_pairs(class_bytes: u32) -> usize {
    (STOCK_BYTES / class_bytes as usize).clamp(2 * refill_pairs(class_bytes), STOCK_MAX.max(2 * REFILL_MAX))
}

/// What `LaneGuard::take_back` did with a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TakeBack {
    /// Stocked again: freed.
    Stocked,
    /// The lane handed it out, and its class's stock is full: free it with `release`.
    Full,
    /// Not a node the lane handed out (or a stale id of one): free it through the table.
    NotHanded,
}

/// 32 bytes: the handed-out set is probed by handle, and small entries keep it in cache.
#[derive(Debug, Clone, Copy)]
struct Pair {
    /// 0: an empty entry of `Handed`.
    handle: u64,
    block: OwnedBlock,
    /// `Loc::block`.
    index: u32,
    /// In the stock: the tag its next id gets. Handed out: its id's tag.
    tag: u16,
    class: u8,
    /// Handed out: the node's kind. In the stock: what handing it out counts (`COUNT_*`).
    kind: u8,
}

/// A stocked pair's block came from the allocator's bump area: handing it out counts as an
/// allocation from there.
const COUNT_BUMP: u8 = 1;
/// It came from the bitmap (zeroed by the allocator): handing it out counts as a reuse from
/// the bitmap.
const COUNT_BITMAP: u8 = 2;
/// A host freed it into the stock, maybe written: handing it out zeroes it first and counts
/// as a reuse from the bitmap (as without the lane, which zeroes a block when it reuses it:
/// the block a free returns is cold, and zeroing it then would only write it back sooner).
const COUNT_REUSED: u8 = 3;

impl Pair {
    #[inline]
    fn loc(&self) -> Loc {
        Loc { class: self.class, block: self.index }
    }
}

/// The handed-out pairs by handle: open addressing with linear probing and Fibonacci hashing
/// (handles are dense, chosen by pcore), at most half full. A `HandleMap` insert and remove
/// cost a pair ~150 instructions; these, a third of that.
struct Handed {
    entries: Vec<Pair>,
    len: usize,
    /// 64 - log2(entries.len()).
    shift: u32,
}

const EMPTY: Pair = Pair { handle: 0, block: OwnedBlock::NONE, index: 0, tag: 0, class: 0, kind: 0 };

impl Handed {
    fn new() -> Handed {
        Handed { entries: vec![EMPTY; 64], len: 0, shift: 64 - 6 }
    }

    #[inline]
    fn mask(&self) -> usize {
        self.entries.len() - 1
    }

    #[inline]
    fn home(&self, handle: u64) -> usize {
        (handle.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `p`, whose handle is not in the set.
    #[inline]
    fn insert(&mut self, p: Pair) {
        if 2 * (self.len + 1) > self.entries.len() {
            self.grow();
        }
        let mut i = self.home(p.handle);
        while self.entries[i].handle != 0 {
            i = (i + 1) & self.mask();
        }
        self.entries[i] = p;
        self.len += 1;
    }

    #[inline]
    fn find(&self, handle: u64) -> Option<usize> {
        if handle == 0 {
            return None; // the mark of an empty entry, never a handle
        }
        let mut i = self.home(handle);
        loop {
            match self.entries[i].handle {
                h if h == handle => return Some(i),
                0 => return None,
                _ => i = (i + 1) & self.mask(),
            }
        }
    }

    /// Removes entry `i`, moving later entries of its run back so every probe still finds them.
    #[inline]
    fn remove_at(&mut self, i: usize) -> Pair {
        let mask = self.mask();
        let removed = self.entries[i];
        let mut hole = i;
        let mut j = (i + 1) & mask;
        while self.entries[j].handle != 0 {
            let home = self.home(self.entries[j].handle);
            // The entry may fill the hole when the hole lies on its way from home to j.
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                self.entries[hole] = self.entries[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        self.entries[hole] = EMPTY;
        self.len -= 1;
        removed
    }

    #[cold]
    fn grow(&mut self) {
        let doubled = vec![EMPTY; 2 * self.entries.len()];
        let old = std::mem::replace(&mut self.entries, doubled);
        self.shift -= 1;
        self.len = 0;
        for p in old.into_iter().filter(|p| p.handle != 0) {
            self.insert(p);
        }
    }

    /// Empties the set, returning what it held.
    fn take_all(&mut self) -> Vec<Pair> {
        let all = self.entries.iter().filter(|p| p.handle != 0).copied().collect();
        self.entries.fill(EMPTY);
        self.len = 0;
        all
    }
}

pub(crate) struct Lane {
    stock: SpinCell<Stock>,
    /// HANDED | STOCKED, stored by each holder of `stock` as it lets go: tells a holder of the
    /// state lock whether it has anything to fold or drain without taking the lane.
    flags: AtomicU8,
}

struct Stock {
    /// Per size class (the store's, fixed at open), smallest first: one bounds check a call.
    classes: Vec<ClassStock>,
    stocked: usize,
    handed: Handed,
}

struct ClassStock {
    /// Block bytes.
    bytes: u32,
    /// `stock_pairs` (worked out once: it divides).
    cap: u32,
    free: Vec<Pair>,
    /// The host's calls the lane served since the last drain, as the allocator counts them:
    /// allocations from the bump area, from the bitmap, frees.
    counts: [u64; 3],
}

/// The lane, held: see `Lane::try_lock`.
pub(crate) struct LaneGuard<'a> {
    flags: &'a AtomicU8,
    stock: SpinGuard<'a, Stock>,
}

impl Lane {
    pub(crate) fn new(class_bytes: Vec<u32>) -> Lane {
        let classes = class_bytes
            .into_iter()
            .map(|bytes| ClassStock { bytes, cap: stock_pairs(bytes) as u32, free: Vec::new(), counts: [0; 3] })
            .collect();
        Lane { stock: SpinCell::new(Stock { classes, stocked: 0, handed: Handed::new() }), flags: AtomicU8::new(0) }
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

    /// False when no block the lane hands out holds `len` bytes.
    #[inline]
    pub(crate) fn serves_len(len: usize) -> bool {
        len <= LANE_MAX_BYTES as usize
    }

    /// Whether the lane hands out blocks of `class_bytes`.
    pub(crate) fn serves(class_bytes: u32) -> bool {
        class_bytes <= LANE_MAX_BYTES
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
        let c = s.classes.iter_mut().find(|c| c.bytes as usize >= min_len)?;
        if !Lane::serves(c.bytes) {
            return None;
        }
        let mut pair = c.free.pop()?;
        match pair.kind {
            COUNT_BUMP => c.counts[0] += 1,
            COUNT_BITMAP => c.counts[1] += 1,
            COUNT_REUSED => {
                c.counts[1] += 1;
                pair.block.zero();
            }
            _ => {}
        }
        s.stocked -= 1;
        pair.kind = kind;
        s.handed.insert(pair);
        Some((NodeId::from_parts(pair.handle, pair.tag), pair.block.addr(), pair.block.len()))
    }

    /// Takes back node `id` if the lane handed it out and the table has not seen it yet: its
    /// block is stocked again (zeroed when next handed out), under a new tag. False for any other id (the caller
    /// frees it under the state lock, which refuses a stale or unknown one).
    #[inline]
    pub(crate) fn take_back(&mut self, id: NodeId) -> TakeBack {
        let s = &mut *self.stock;
        let Some(i) = s.handed.find(id.handle()) else { return TakeBack::NotHanded };
        let found = &s.handed.entries[i];
        if found.tag != id.tag() {
            return TakeBack::NotHanded;
        }
        let Some(c) = s.classes.get_mut(found.class as usize) else { return TakeBack::NotHanded };
        if c.free.len() >= c.cap as usize {
            return TakeBack::Full;
        }
        let pair = s.handed.remove_at(i);
        c.counts[2] += 1;
        c.free.push(Pair { tag: next_tag(pair.tag), kind: COUNT_REUSED, ..pair });
        s.stocked += 1;
        TakeBack::Stocked
    }

    /// Frees node `id` if the lane handed it out: its block and handle go straight back to
    /// the allocator and the table (the slot keeps the id's tag, so a second free is a double
    /// free). False for any other id. Under the state lock.
    pub(crate) fn release(&mut self, core: &mut Core, id: NodeId) -> bool {
        let s = &mut *self.stock;
        let Some(i) = s.handed.find(id.handle()).filter(|&i| s.handed.entries[i].tag == id.tag()) else {
            return false;
        };
        let pair = s.handed.remove_at(i);
        core.return_from_lane(pair.handle, pair.tag, pair.loc(), LaneReturn::HostFree);
        true
    }

    /// Stocks about `REFILL_BYTES` of pairs of `class` from the table and the allocator (at
    /// least one, or the allocator's error). Under the state lock.
    pub(crate) fn refill(&mut self, core: &mut Core, class: u8) -> Result<()> {
        let s = &mut *self.stock;
        let want = refill_pairs(s.classes[class as usize].bytes);
        let before = s.classes[class as usize].free.len();
        let taken = Self::take(s, core, class, want);
        // Handed out (popped) in the order the allocator and the table gave them, as without
        // the lane: the block freed last and the lowest free handle first.
        s.classes[class as usize].free[before..].reverse();
        taken
    }

    fn take(s: &mut Stock, core: &mut Core, class: u8, want: usize) -> Result<()> {
        for i in 0..want {
            match core.take_for_lane(class) {
                Ok((handle, tag, loc, counted)) => {
                    let block = core.space.owned_block(loc);
                    let pair = Pair { handle, block, index: loc.block, tag, class, kind: counted };
                    s.classes[class as usize].free.push(pair);
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
        if self.stock.handed.is_empty() {
            return;
        }
        for p in self.stock.handed.take_all() {
            core.adopt_from_lane(p.handle, p.tag, p.loc(), p.kind);
        }
    }

    /// `fold`, and gives every stocked pair back to the table and the allocator. Under the
    /// state lock.
    pub(crate) fn drain(&mut self, core: &mut Core) {
        self.fold(core);
        let s = &mut *self.stock;
        for (class, c) in s.classes.iter_mut().enumerate() {
            core.count_lane_calls(class as u8, std::mem::take(&mut c.counts));
            // Blocks bumped and never handed out go back to the bump area, the last bumped
            // first, so a drain leaves the class file as if they had never been taken.
            c.free.sort_unstable_by_key(|p| (p.kind == COUNT_BUMP, p.index));
            while let Some(p) = c.free.pop() {
                s.stocked -= 1;
                // The slot keeps the tag of the last id issued, as a freed slot does.
                let how = if p.kind == COUNT_BUMP { LaneReturn::NeverHandedOut } else { LaneReturn::FreedEarlier };
                core.return_from_lane(p.handle, prev_tag(p.tag), p.loc(), how);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::TestRng as Rng;
    use std::collections::HashMap;

    fn pair(handle: u64) -> Pair {
        Pair { handle, tag: handle as u16 | 1, ..EMPTY }
    }

    #[test]
    fn the_handed_set_finds_what_it_holds_through_growth_and_removals() {
        let mut set = Handed::new();
        let mut model: HashMap<u64, u16> = HashMap::new();
        let mut rng = Rng::new(17);
        for step in 0..50_000u64 {
            // Dense handles, as the table issues them, with runs that collide.
            let handle = 1 + rng.below(3000);
            match set.find(handle) {
                Some(i) => {
                    assert_eq!(Some(&set.entries[i].tag), model.get(&handle), "step {step}");
                    if rng.below(3) != 0 {
                        assert_eq!(set.remove_at(i).handle, handle);
                        model.remove(&handle);
                    }
                }
                None => {
                    assert!(!model.contains_key(&handle), "step {step}: {handle} lost");
                    set.insert(pair(handle));
                    model.insert(handle, pair(handle).tag);
                }
            }
            assert_eq!(set.len, model.len());
        }
        for &h in model.keys() {
            assert!(set.find(h).is_some());
        }
        let mut all: Vec<u64> = set.take_all().iter().map(|p| p.handle).collect();
        all.sort_unstable();
        let mut expected: Vec<u64> = model.into_keys().collect();
        expected.sort_unstable();
        assert_eq!(all, expected);
        assert!(set.is_empty() && set.find(all.first().copied().unwrap_or(1)).is_none());
    }
}
