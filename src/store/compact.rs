//! Giving space back: relocation of live nodes from the tail of a class file into free
//! blocks nearer its front, and cutting the tail once it is free. One mechanism, two budgets:
//! every commit moves a little ([`Budget::COMMIT`]), `Store::compact` moves all it can
//! ([`Budget::COMPACT`]).
//!
//! A relocation is an ordinary new version of the node: same id, new block, logged by the
//! commit that carries it; the old block is freed through the one reuse rule
//! (`Shared::reuse_limit`), so snapshots, reader processes, delta-log bases and checkpoints see
//! nothing new. Two rules keep hosts safe:
//! - Only clean committed nodes move: never one the host changed since the last commit, nor
//!   one with a block open for writing (`pcore_node_write_ptr`).
//! - The old block gets one more commit of grace: it is queued as if freed by the commit after
//!   the move. A `pcore_node_read` pointer to a node the host does not write therefore stays
//!   good until the end of the second commit after it was taken (README, "Space").
//!
//! Cutting a class file's tail (`Shared::give_back_tail`) happens only right after a
//! checkpoint, or at a writer's open with an empty log, and only when no reader process is
//! registered: a reader replays the log into its private mapping, and a frame written before
//! the checkpoint may name a block in a segment that is cut. After a checkpoint a new reader
//! replays no such frame. A free block is one nothing needs: not the durable state (blocks are
//! freed only once the freeing commit is durable), not a snapshot, not a delta's base. After a
//! power cut that loses the cut, the file is longer, which is harmless.

use super::core::Core;
use super::table::State;
use super::Store;
use crate::alloc::Loc;
use crate::error::Result;

/// How much relocation may do in one call.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Budget {
    /// Table slots looked at, from where the last call stopped.
    pub scan: u64,
    /// Bytes of blocks moved at most.
    pub bytes: u64,
    /// Aim at the least space (compaction) rather than leave a quarter of room to grow.
    pub tight: bool,
}

impl Budget {
    /// At every commit: a few microseconds of scanning, at most 256 KiB copied (and logged as
    /// empty deltas), so no commit stalls.
    pub(crate) const COMMIT: Budget = Budget { scan: 4096, bytes: 256 << 10, tight: false };
    /// `Store::compact`'s rounds: the whole table, 16 MiB moved per commit.
    pub(crate) const COMPACT: Budget = Budget { scan: u64::MAX, bytes: 16 << 20, tight: true };
    /// Nothing moves (the commit that lets the last moves' grace pass).
    pub(crate) const NONE: Budget = Budget { scan: 0, bytes: 0, tight: false };
}

/// What one relocation call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Moved {
    pub nodes: u64,
    pub bytes: u64,
    /// Stopped because the byte budget ran out: more may be movable right away.
    pub budget_hit: bool,
}

impl Core {
    /// Per class, the blocks it should fit in (`keep_blocks_of`).
    pub(super) fn keep_blocks(&self, tight: bool) -> Vec<u64> {
        (0..self.space.classes().count() as u8).map(|class| self.keep_blocks_of(class, tight)).collect()
    }

    /// The blocks a class should fit in: the blocks its nodes need (allocated, less those
    /// waiting in the free queues), with a quarter more room unless `tight`, at least one.
    /// Blocks still queued take room meanwhile: a move that finds no free block below the line
    /// waits for a later call. The line need not end a segment: a file is cut inside its last
    /// segment too (`alloc::shrink`).
    fn keep_blocks_of(&self, class: u8, tight: bool) -> u64 {
        self.keep_for(class, self.space.allocated_blocks(class), tight)
    }

    fn keep_for(&self, class: u8, allocated: u64, tight: bool) -> u64 {
        let needed = allocated.saturating_sub(self.queued_blocks[class as usize]);
        let wanted = if tight { needed } else { needed + needed / 4 };
        wanted.max(1)
    }

    /// Bytes of the blocks in use past each class's cut line (`keep_blocks_of`, with room):
    /// once relocation has nothing left to move, blocks a checkpoint would let go.
    pub(crate) fn bytes_past_cut_lines(&self) -> u64 {
        (0..self.space.classes().count() as u8)
            .map(|class| {
                let line = self.space.cut_line(class, self.keep_blocks_of(class, false));
                self.space.in_use_end(class).saturating_sub(line) * u64::from(self.space.capacity(class))
            })
            .sum()
    }

    /// The segment from which a class's nodes should move toward the front: the one holding
    /// block `keep_blocks_of`, when blocks are in use past where a cut would end the file;
    /// `None` when they all lie before it. A class with no block allocated has none in use:
    /// its bitmap is not searched, at every commit, for each class the store does not use.
    #[inline]
    fn drain_from(&self, class: u8, tight: bool) -> Option<u32> {
        let allocated = self.space.allocated_blocks(class);
        if allocated == 0 {
            return None;
        }
        let keep = self.keep_for(class, allocated, tight);
        (self.space.in_use_end(class) > self.space.cut_line(class, keep))
            .then(|| (keep / u64::from(self.space.blocks_per_segment(class))) as u32)
    }

    /// True when some class has nodes in use past where a cut would end its file: relocation
    /// has something to move.
    pub(crate) fn wants_relocation(&self, tight: bool) -> bool {
        (0..self.space.classes().count() as u8).any(|class| self.drain_from(class, tight).is_some())
    }

    /// True when the node may move now (see the module comment) and its block lies beyond
    /// the segments its class should fit in.
    fn movable(&self, handle: u64, keep: &[u64]) -> bool {
        let s = &self.table.slots[handle as usize];
        // An empty node may be one allocated and committed before its first publish: its host
        // may still write through the allocation's pointer, into this very block.
        s.state == State::Live
            && !s.dirty
            && s.len > 0
            && u64::from(s.block) >= keep[s.class as usize]
            && !self.drafts.contains_key(&handle)
            && !self.table.shadowed.contains_key(&handle)
    }

    /// Moves clean nodes from the tails of class files into free blocks nearer the front,
    /// within `budget`; each move is a new version the next commit logs.
    pub(crate) fn relocate(&mut self, budget: Budget) -> Moved {
        self.relocate_by(budget, Core::move_node)
    }

    /// [`Core::relocate`] for a store at rest (`Shared::relocate_at_rest`), whose checkpoint,
    /// not a commit, records the moves: each node's bytes go to its new block in place of the
    /// old, which is held until that checkpoint is on disk.
    pub(crate) fn relocate_at_rest(&mut self, budget: Budget) -> Moved {
        self.relocate_by(budget, Core::move_node_at_rest)
    }

    /// The one choice of what moves where, for both kinds of move.
    fn relocate_by(&mut self, budget: Budget, move_node: fn(&mut Core, u64, Loc)) -> Moved {
        let mut moved = Moved::default();
        if budget.scan == 0 {
            return moved;
        }
        let mut draining = false;
        for class in 0..self.space.classes().count() as u8 {
            let from = self.drain_from(class, budget.tight);
            self.space.set_drain_from(class, from.unwrap_or(u32::MAX));
            draining |= from.is_some();
        }
        if !draining {
            return moved;
        }
        let keep = self.keep_blocks(budget.tight);
        let handles = self.table.handle_count();
        let scan = budget.scan.min(handles.saturating_sub(1));
        for _ in 0..scan {
            let handle = self.relocate_cursor.max(1);
            self.relocate_cursor = if handle + 1 >= handles { 1 } else { handle + 1 };
            if handle >= handles || !self.movable(handle, &keep) {
                continue;
            }
            let slot = self.table.slots[handle as usize];
            let bytes = u64::from(self.space.capacity(slot.class));
            if moved.bytes + bytes > budget.bytes {
                moved.budget_hit = true;
                break;
            }
            let Some(to) = self.space.allocate_front(slot.class, keep[slot.class as usize]) else { continue };
            move_node(self, handle, to);
            moved.nodes += 1;
            moved.bytes += bytes;
        }
        moved
    }

    /// The node's bytes (its whole block) go to `to`, which becomes its current block; the
    /// committed block stays its committed version until the commit applies.
    fn move_node(&mut self, handle: u64, to: Loc) {
        let slot = self.table.slots[handle as usize];
        self.space.copy(slot.loc(), 0, to, self.space.capacity(slot.class) as usize);
        self.table.shadowed.insert(handle, super::table::Committed { loc: slot.loc(), len: slot.len, crc: slot.crc });
        self.table.slots[handle as usize].set_loc(to);
        self.mark_dirty(handle);
        self.relocated.push(handle);
        self.relocations += 1;
    }

    /// A move at rest: the committed version itself goes to `to`; the checkpoint that
    /// follows writes the node's new place, and the old block, which the last checkpoint
    /// names, is held until then (`Core::moved_at_rest`).
    fn move_node_at_rest(&mut self, handle: u64, to: Loc) {
        let slot = self.table.slots[handle as usize];
        self.space.copy(slot.loc(), 0, to, self.space.capacity(slot.class) as usize);
        self.table.slots[handle as usize].set_loc(to);
        self.note_changed(&[handle]);
        self.hold_moved_at_rest(slot.loc());
        self.relocations += 1;
    }

    /// Nodes relocation would move now with a tight budget (for a progress bar's length).
    pub(crate) fn movable_nodes(&self) -> u64 {
        let keep = self.keep_blocks(true);
        (1..self.table.handle_count()).filter(|&h| self.movable(h, &keep)).count() as u64
    }

    /// Bytes of blocks holding the current version of a node (live or reserved): what the
    /// store's footprint is measured against.
    pub(crate) fn live_block_bytes(&self) -> u64 {
        self.table
            .slots
            .iter()
            .filter(|s| s.state != State::Free)
            .map(|s| u64::from(self.space.capacity(s.class)))
            .sum()
    }
}

/// At close, nodes moved at most: a close stays short however fragmented the store.
pub const CLOSE_COMPACT_BYTES: u64 = 64 << 20;

/// Rounds of `Store::compact` at most (each a commit, and a checkpoint when nothing more
/// could move): a writer that keeps filling the tail meanwhile cannot keep it going forever.
const COMPACT_ROUNDS_MAX: u32 = 64;

/// What [`Store::compact`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CompactReport {
    /// Nodes moved, and their blocks' bytes.
    pub moved_nodes: u64,
    pub moved_bytes: u64,
    /// The store's files before and after.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Blocks of the nodes' current versions: what the footprint is measured against.
    pub live_bytes: u64,
    /// Bytes that could not be given back because an open snapshot or a reader process still
    /// reads them (and delta bases a checkpoint has not yet let go of).
    pub pinned_bytes: u64,
}

impl CompactReport {
    /// `bytes_after / live_bytes` (0 for an empty store).
    pub fn ratio(&self) -> f64 {
        if self.live_bytes == 0 {
            0.0
        } else {
            self.bytes_after as f64 / self.live_bytes as f64
        }
    }
}

impl Store {
    /// Brings the store near its live bytes, online: moves nodes from the tails of the class
    /// files into free blocks nearer the front (each move an ordinary new version, in commits
    /// of 16 MiB of moves at most), lets the old blocks go through a checkpoint, and cuts the
    /// free tails. Readers, snapshots and the writer go on between the rounds.
    ///
    /// Each round is a commit, so it also commits whatever was published before it: call this
    /// where you would call `commit`. Blocks that an open snapshot or a reader process still
    /// reads cannot be given back (reported as `pinned_bytes`), and nothing is cut while a
    /// reader process is registered. `progress(moved, movable)` is called after each round.
    pub fn compact(&self, mut progress: impl FnMut(u64, u64)) -> Result<CompactReport> {
        let bytes_before = self.file_bytes().0;
        let movable = self.read_state(|c| Ok(c.movable_nodes()))?;
        let mut report = CompactReport { bytes_before, ..CompactReport::default() };
        self.compact_rounds(&mut report, u64::MAX, |moved| progress(moved, movable.max(moved)))?;
        let stats = self.stats()?;
        report.bytes_after = self.file_bytes().0;
        report.live_bytes = stats.live_bytes;
        report.pinned_bytes = stats.pending_free_bytes + stats.held_base_bytes;
        Ok(report)
    }

    /// Rounds of relocation: commits moving up to `Budget::COMPACT` each; when a round moves
    /// less than its budget allows, the moves' grace is let pass (an empty commit) and a
    /// checkpoint frees the old blocks and cuts the tails; stops when a round moves nothing
    /// or `max_bytes` were moved.
    fn compact_rounds(&self, report: &mut CompactReport, max_bytes: u64, mut progress: impl FnMut(u64)) -> Result<()> {
        if !self.is_in_memory() {
            // Blocks freed by commits not yet synced (BALANCED, EVENTUAL) are not free to move
            // into: a checkpoint syncs those commits and lets the blocks go first.
            self.checkpoint()?;
        }
        for _ in 0..COMPACT_ROUNDS_MAX {
            let budget = Budget { bytes: Budget::COMPACT.bytes.min(max_bytes - report.moved_bytes), ..Budget::COMPACT };
            let (_, moved) = self.commit_relocating(budget)?;
            report.moved_nodes += moved.nodes;
            report.moved_bytes += moved.bytes;
            progress(report.moved_nodes);
            if moved.budget_hit && report.moved_bytes < max_bytes {
                continue;
            }
            self.commit_relocating(Budget::NONE)?;
            if !self.is_in_memory() {
                self.checkpoint()?;
                self.give_back_log_space()?;
            } else {
                self.give_back_in_memory()?;
            }
            if moved.nodes == 0 || report.moved_bytes >= max_bytes {
                break;
            }
        }
        Ok(())
    }

    /// At close (see `Store::close`): when the class files hold more than a quarter above what
    /// the nodes need and no snapshot or reader process is there, drops the uncommitted work
    /// (as the close would) and compacts, moving at most `CLOSE_COMPACT_BYTES`.
    pub(super) fn compact_at_close(&self) -> Result<()> {
        if self.is_in_memory() {
            return Ok(());
        }
        let worth = self.read_state(|c| Ok(c.wants_relocation(false)))?;
        // Readers are looked at only then: a store with nothing to move closes without
        // reading its reader table (issue 17's close of an unchanged store).
        if !worth || !self.can_give_back() {
            return Ok(());
        }
        self.abort()?;
        self.compact_rounds(&mut CompactReport::default(), CLOSE_COMPACT_BYTES, |_| {})
    }
}
