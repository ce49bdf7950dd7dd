//! The store's in-memory state and every operation on it that does not touch the log:
//! allocate, publish (copy-on-write, growth), in-place writes, free, retire, roots, and the
//! two halves of a commit (build the frame; apply it once it is written).
//!
//! Every operation checks all it needs before it changes anything, so a failed call leaves
//! the state as it was.

use super::codec::crc;
use super::crc_update;
use super::handle_list::HandleList;
use super::handle_map::HandleMap;
use super::history::{History, Version};
use super::node_id::NodeId;
use super::script::{Edit, Script};
use super::seal::{self, Seals};
use super::table::{Committed, ObjectTable, Origin, Slot, State};
use super::wal::{FrameBuilder, FrameParts, PutOp};
use super::{GrowthPolicy, GrowthRule, NodeInfo};
use crate::alloc::{Loc, Space};
use crate::error::{Error, Result};
use crate::limits::{ROOT_COUNT_MAX, ROOT_META_MAX_BYTES, ROOT_NAME_MAX_BYTES};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

/// Where publish takes its bytes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Bytes(&'a [u8]),
    /// `len` bytes at `offset` inside the node's draft (see `Core::draft_loc`): the host wrote
    /// there through `pcore_node_write_ptr`'s pointer and publishes from there. The draft
    /// becomes the node's block.
    Draft {
        offset: usize,
        len: usize,
    },
    /// `len` bytes at `offset` inside the node's own current block: the host wrote into the
    /// block and publishes from there; copied with overlap allowed.
    OwnBlock {
        offset: usize,
        len: usize,
    },
}

impl Source<'_> {
    fn len(&self) -> usize {
        match self {
            Source::Bytes(b) => b.len(),
            Source::OwnBlock { len, .. } | Source::Draft { len, .. } => *len,
        }
    }
}

pub(crate) type Roots = BTreeMap<Vec<u8>, (u64, Vec<u8>)>;

/// A commit's frame, built under the state lock and written outside it.
pub(crate) struct PreparedCommit {
    pub epoch: u64,
    /// Its payloads still in their blocks: the commit holds the state lock against
    /// mutations until the frame is written.
    pub frame: FrameParts,
    /// Blocks whose payload is not in the frame: flushed before the frame is written.
    pub unlogged: Vec<(Loc, usize)>,
    /// The commit frees a block that holds the only copy of a committed version (one synced
    /// in its block, not logged), reusable once the commit is durable: see `Shared::sync_log`.
    pub frees_sole_copies: bool,
}

/// A root in `Core::hot_roots`. Its name is always in `roots` too.
struct HotRoot {
    name: Vec<u8>,
    id: u64,
    meta: Vec<u8>,
    /// Newer than the value in `roots`, and not yet in `dirty_roots`.
    ahead: bool,
}

/// How many roots stay hot: one per tree being written to, for a few trees at once.
const HOT_ROOTS_MAX: usize = 8;

/// Op buffers of ended scripts kept for reuse, and the largest kept: at most 16 MiB.
const SPARE_OPS_MAX: usize = 4096;
const SPARE_OPS_BYTES_MAX: usize = 4096;

pub(crate) struct Core {
    pub space: Space,
    pub table: ObjectTable,
    /// Named roots as last set (what `get_root` answers), but for the newer values of
    /// `hot_roots`.
    roots: Roots,
    /// Roots saved again and again (a tree's anchor, after every insert), kept beside `roots`
    /// until a commit or a reader needs them: saving one is then a name compare and a copy.
    hot_roots: Vec<HotRoot>,
    /// Named roots as of the last commit: what a checkpoint writes and a snapshot reads (it
    /// shares them; a commit copies them only while one does). Uncommitted root changes (a
    /// tree's anchor after a change not yet committed) must never reach the disk.
    pub committed_roots: Arc<Roots>,
    /// Versions replaced by commits that open snapshots may still read.
    pub history: History,
    /// Blocks the host writes through raw pointers outside any lock (`pcore_node_write_ptr`),
    /// per handle: the node's readable version stays where it is until the host publishes,
    /// so no reader copies bytes while they are being written. See `draft_loc`.
    pub(super) drafts: HandleMap<Loc>,
    /// Edit scripts of the nodes changed since their commit only through recorded edits
    /// (`Core::update_recorded`), logged in place of a delta (see `script`).
    scripts: HandleMap<Script>,
    /// Op buffers of earlier commits' scripts, reused: ~400 nodes a statement-sized commit.
    spare_ops: Vec<Vec<u8>>,
    /// Set when the store was opened for writing while a reader process read an older commit
    /// than the one opened: every block that existed then is held (the allocator treats it as
    /// used) until no reader older than this epoch is left. See `hold_for_old_readers`.
    held_for_readers_before: Option<u64>,
    /// Bytes of the blocks held only for those readers (allocated, owned by no version).
    pub held_for_readers_bytes: u64,
    pub epoch: u64,
    pub growth: GrowthPolicy,
    pub growth_rule: GrowthRule,
    /// Check a committed node's bytes against its checksum on every read.
    pub verify_reads: bool,
    /// Hold every checkpointed version a commit replaces or frees until the next checkpoint
    /// (a store in files: recovery verifies the groups the log touches, `seal.rs`).
    pub hold_checkpointed: bool,
    pub reallocations: u64,
    pub live_nodes: u64,
    pub reserved_nodes: u64,
    /// The handles marked dirty since the last commit, each once (a handle freed and reused
    /// stays listed; its slot's `dirty` flag says whether there is anything to log).
    dirty: HandleList,
    dirty_roots: BTreeSet<Vec<u8>>,
    /// Roots removed since the last commit, each once committed (its removal is logged);
    /// never also in `dirty_roots`.
    removed_roots: BTreeSet<Vec<u8>>,
    retired: Vec<(u64, NodeId)>,
    /// How many of `retired` were there at the last commit: the rest are uncommitted.
    retired_committed: usize,
    /// Blocks freed by a commit, reusable once that commit is durable: until then a crash
    /// could bring back the commit before it, whose nodes still live in them.
    pending_frees: VecDeque<(u64, Loc)>,
    pub pending_free_bytes: u64,
    /// Checkpointed versions that a commit logged a delta against, with that commit's epoch:
    /// recovery reads them, so they are reusable only once a checkpoint has flushed what
    /// replaced them (docs/LOG.md).
    held_bases: VecDeque<(u64, Loc)>,
    /// Blocks that nodes moved from at rest (`relocate_at_rest`): the last checkpoint names
    /// them until the next one, which records the moves, is on disk (counted in
    /// `held_base_bytes`).
    pub(super) moved_at_rest: Vec<Loc>,
    pub held_base_bytes: u64,
    /// Per class, blocks in `pending_frees` and `held_bases`: allocated, but no node's current
    /// version (relocation sizes a class by what its nodes need, `compact.rs`).
    pub(super) queued_blocks: [u64; crate::limits::CLASS_COUNT_MAX],
    /// The epoch the last checkpoint recorded.
    checkpoint_epoch: u64,
    /// Handles whose committed version's origin is not `Checkpoint`, and handles freed since
    /// the last checkpoint (duplicates allowed): what the next checkpoint resets and writes.
    changed_since_checkpoint: Vec<u64>,
    /// The prepared commit's decision per PUT, by handle: the origin of the new version, and
    /// whether the committed version is a base to hold until the next checkpoint.
    plan: Vec<(u64, Origin, bool)>,
    /// Nodes moved by relocation in the uncommitted changes, in the order moved (see
    /// `compact.rs`): their old blocks get one more commit of grace before reuse.
    pub(super) relocated: Vec<u64>,
    /// Where relocation's next scan of the table starts.
    pub(super) relocate_cursor: u64,
    /// Nodes relocation moved since the open (uncommitted moves included).
    pub relocations: u64,
}

/// The two kinds of freed blocks, by what makes them reusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FreeQueue {
    /// Once the commit that freed them is durable.
    Durable,
    /// Once a checkpoint has flushed what replaced them.
    Checkpoint,
}

impl Core {
    /// A core over `table` as of `epoch`, the last checkpoint being at `checkpoint_epoch`.
    pub fn new(
        space: Space,
        mut table: ObjectTable,
        roots: Roots,
        (epoch, checkpoint_epoch): (u64, u64),
        growth: GrowthPolicy,
    ) -> Core {
        let (live_nodes, changed_since_checkpoint) = table.rebuild_after_load();
        Core {
            space,
            table,
            committed_roots: Arc::new(roots.clone()),
            roots,
            history: History::default(),
            drafts: HandleMap::default(),
            scripts: HandleMap::default(),
            spare_ops: Vec::new(),
            held_for_readers_before: None,
            held_for_readers_bytes: 0,
            hot_roots: Vec::new(),
            epoch,
            growth,
            growth_rule: GrowthRule::default(),
            verify_reads: false,
            hold_checkpointed: false,
            reallocations: 0,
            live_nodes,
            reserved_nodes: 0,
            dirty: HandleList::default(),
            dirty_roots: BTreeSet::new(),
            removed_roots: BTreeSet::new(),
            retired: Vec::new(),
            retired_committed: 0,
            pending_frees: VecDeque::new(),
            pending_free_bytes: 0,
            held_bases: VecDeque::new(),
            moved_at_rest: Vec::new(),
            held_base_bytes: 0,
            queued_blocks: [0; crate::limits::CLASS_COUNT_MAX],
            checkpoint_epoch,
            changed_since_checkpoint,
            plan: Vec::new(),
            relocated: Vec::new(),
            relocate_cursor: 1,
            relocations: 0,
        }
    }

    #[inline(always)]
    pub(super) fn mark_dirty(&mut self, handle: u64) {
        // Every change goes through here or `mark_changed`: one its script does not record
        // ends the script (`update_recorded` and `prepare_write` take the other way).
        if !self.scripts.is_empty() {
            self.drop_script(handle);
        }
        self.mark_changed(handle);
    }

    /// Lists the node as changed in this commit (its script, if any, goes on).
    #[inline]
    fn mark_changed(&mut self, handle: u64) {
        let slot = &mut self.table.slots[handle as usize];
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.insert(handle);
        }
    }

    /// True when changes wait for a commit (nodes allocated, written or freed, roots set or
    /// removed): a checkpoint now would flush the pages of a transaction in progress.
    pub fn has_uncommitted(&self) -> bool {
        !self.dirty.is_empty()
            || !self.dirty_roots.is_empty()
            || !self.removed_roots.is_empty()
            || self.reserved_nodes > 0
    }

    /// Inlined into `Store::allocate`, with every failure's work out of line: the whole call
    /// costs little more than the bookkeeping it must do.
    #[inline]
    pub fn allocate(&mut self, min_len: usize, kind: u8) -> Result<(NodeId, Loc)> {
        if kind == 0 {
            return Err(kind_zero());
        }
        let class = self.space.classes().class_for(min_len as u64)?;
        let loc = self.space.allocate(class)?;
        let handle = match self.table.take_handle() {
            Ok(h) => h,
            Err(e) => return Err(self.give_back(loc, e)),
        };
        let tag = self.table.slots[handle as usize].tag;
        self.table.slots[handle as usize] = Slot::reserved(loc, 0, tag, kind);
        self.mark_dirty(handle);
        self.reserved_nodes += 1;
        Ok((self.table.id_of(handle), loc))
    }

    /// Frees the block of an allocation that failed later on; the allocation's error, or the
    /// free's.
    #[cold]
    #[inline(never)]
    fn give_back(&mut self, loc: Loc, e: Error) -> Error {
        match self.space.free(loc) {
            Ok(()) => e,
            Err(freeing) => freeing,
        }
    }

    /// See [`Store::reserve`](super::Store::reserve): takes `count` blocks (growing the class
    /// file as allocation does) and gives them back, free for the allocations that follow.
    pub fn reserve(&mut self, min_len: usize, count: usize) -> Result<()> {
        let class = self.space.classes().class_for(min_len as u64)?;
        let mut taken = Vec::with_capacity(count);
        let result = (0..count).try_for_each(|_| self.space.allocate(class).map(|loc| taken.push(loc)));
        for loc in taken {
            self.space.free(loc)?;
        }
        result
    }

    fn write_source(&mut self, to: Loc, src: Source<'_>, own: Loc) {
        match src {
            Source::Bytes(b) => self.space.write(to, b),
            Source::OwnBlock { offset, len } if own == to => self.space.shift_to_start(to, offset, len),
            Source::OwnBlock { offset, len } => self.space.copy(own, offset, to, len),
            Source::Draft { .. } => unreachable!("publish adopts a draft before writing"),
        }
    }

    /// True when the node's current block is its committed block, which must not be written.
    ///
    /// Asked of visible nodes only, for which a LIVE node is dirty exactly when it has a shadow
    /// (every write shadows before it marks the node dirty; a freed node is invisible): the
    /// slot, read anyway, answers without a probe of the shadow map, a cache miss per publish
    /// with millions of nodes.
    fn needs_shadow(&self, handle: u64) -> bool {
        let slot = &self.table.slots[handle as usize];
        let needs = slot.state == State::Live && !slot.dirty;
        debug_assert_eq!(needs, slot.state == State::Live && !self.table.shadowed.contains_key(&handle));
        needs
    }

    /// Gives the node a private copy of its committed block (copy-on-write), copying
    /// `copy_len` bytes of the old contents into it; the caller writes the first
    /// `written_bytes` next (the rest is zeroed).
    fn shadow(&mut self, handle: u64, copy_len: usize, written_bytes: usize) -> Result<Loc> {
        if copy_len > 0 {
            self.check_base(handle)?;
        }
        let slot = self.table.slots[handle as usize];
        let shadow = self.space.allocate_over(slot.class, copy_len.max(written_bytes))?;
        if copy_len > 0 {
            self.space.copy(slot.loc(), 0, shadow, copy_len);
        }
        self.table.shadowed.insert(handle, Committed { loc: slot.loc(), len: slot.len, crc: slot.crc });
        self.table.slots[handle as usize].set_loc(shadow);
        Ok(shadow)
    }

    /// With checksums verified, a committed version is checked before a change copies its
    /// bytes into the next: a read would have refused them, and an edit must not give damaged
    /// bytes a fresh checksum (an outside tester's edits did, in a store the same open wrote).
    fn check_base(&self, handle: u64) -> Result<()> {
        if self.verify_reads {
            self.check_payload(handle)?;
        }
        Ok(())
    }

    /// The node's current block is replaced by a new one: keep it if it is the committed
    /// version (freed when the commit is durable), free it now if it never was committed.
    fn drop_working_block(&mut self, handle: u64) -> Result<()> {
        if self.needs_shadow(handle) {
            let slot = self.table.slots[handle as usize];
            self.table.shadowed.insert(handle, Committed { loc: slot.loc(), len: slot.len, crc: slot.crc });
            Ok(())
        } else {
            self.space.free(self.table.slots[handle as usize].loc())
        }
    }

    pub fn publish(&mut self, id: NodeId, src: Source<'_>) -> Result<NodeId> {
        let handle = self.table.resolve(id)?;
        let capacity = self.space.capacity(self.table.slots[handle as usize].class) as usize;
        if let Source::Draft { offset, len } = src {
            let Some(&draft) = self.drafts.get(&handle) else {
                return Err(Error::InvalidArgument(format!("node {id} has no block open for writing")));
            };
            check_source_range(id, offset, len, capacity)?;
            self.space.shift_to_start(draft, offset, len);
            self.adopt_draft(handle, len)?;
            return Ok(id);
        }
        let published = self.publish_to_block(id, handle, src)?;
        // Published from elsewhere: what the host wrote in the draft is dropped. (Most
        // publishes come with no draft open anywhere: then there is nothing to look up.)
        if self.drafts.is_empty() {
            return Ok(published);
        }
        if let Some(draft) = self.drafts.remove(&handle) {
            self.space.free(draft)?;
        }
        Ok(published)
    }

    /// `publish` of bytes that are not in the node's draft.
    fn publish_to_block(&mut self, id: NodeId, handle: u64, src: Source<'_>) -> Result<NodeId> {
        let slot = self.table.slots[handle as usize];
        let capacity = self.space.capacity(slot.class) as usize;
        let len = src.len();
        if let Source::OwnBlock { offset, len } = src {
            check_source_range(id, offset, len, capacity)?;
        }
        if len <= capacity {
            let target = if self.needs_shadow(handle) { self.shadow(handle, 0, len)? } else { slot.loc() };
            self.write_source(target, src, slot.loc());
            self.table.slots[handle as usize].len = len as u32;
            self.mark_dirty(handle);
            return Ok(id);
        }
        let class = self.space.classes().growth_class(len as u64, self.growth_rule)?;
        match self.growth {
            GrowthPolicy::StableId => {
                let new = self.space.allocate_over(class, len)?;
                self.write_source(new, src, slot.loc());
                self.drop_working_block(handle)?;
                let s = &mut self.table.slots[handle as usize];
                s.set_loc(new);
                s.len = len as u32;
                self.mark_dirty(handle);
                self.reallocations += 1;
                Ok(id)
            }
            GrowthPolicy::NewId => {
                let (new_id, new) = self.allocate(class_floor_len(self, class), slot.kind)?;
                self.write_source(new, src, slot.loc());
                self.table.slots[new_id.handle() as usize].len = len as u32;
                self.free(id)?;
                self.reallocations += 1;
                Ok(new_id)
            }
        }
    }

    /// A writable view of the node's current bytes: the block itself if uncommitted, or a
    /// shadow copy of the committed block. The node counts as changed from here on.
    pub fn write_loc(&mut self, id: NodeId) -> Result<Loc> {
        let handle = self.table.resolve(id)?;
        self.write_loc_of(handle)
    }

    /// As `write_loc`, for a handle already resolved: a change its script does not record.
    fn write_loc_of(&mut self, handle: u64) -> Result<Loc> {
        let loc = self.writable_block(handle)?;
        self.mark_dirty(handle);
        Ok(loc)
    }

    /// As `write_loc_of`, for a change its script records: the script goes on.
    #[inline]
    fn recorded_write_loc_of(&mut self, handle: u64) -> Result<Loc> {
        let loc = self.writable_block(handle)?;
        self.mark_changed(handle);
        Ok(loc)
    }

    /// The node's block to write in: a shadow of its committed block, taken at its first
    /// change since its commit.
    #[inline]
    fn writable_block(&mut self, handle: u64) -> Result<Loc> {
        let loc = if self.needs_shadow(handle) {
            let capacity = self.space.capacity(self.table.slots[handle as usize].class) as usize;
            self.shadow(handle, capacity, capacity)?
        } else {
            self.table.slots[handle as usize].loc()
        };
        self.space.touch(loc);
        Ok(loc)
    }

    /// The block the host writes node `id`'s next version into through a raw pointer, with
    /// no lock held (`pcore_node_write_ptr`): a copy of the node's current bytes, apart from
    /// the block readers read, so that no copy a reader takes meanwhile is half written. It
    /// becomes the node's block at `publish_in_place` (or a publish from inside it); a publish
    /// of other bytes, a free or an abort drops it. A node allocated and never published has
    /// nothing to read: its own block is handed out.
    pub fn draft_loc(&mut self, id: NodeId) -> Result<Loc> {
        let handle = self.table.resolve(id)?;
        if let Some(&draft) = self.drafts.get(&handle) {
            return Ok(draft);
        }
        let slot = self.table.slots[handle as usize];
        if slot.state == State::Reserved && slot.len == 0 {
            return Ok(slot.loc());
        }
        if self.needs_shadow(handle) {
            self.check_base(handle)?;
        }
        let draft = self.space.allocate(slot.class)?;
        self.space.copy(slot.loc(), 0, draft, self.space.capacity(slot.class) as usize);
        self.space.touch(draft);
        self.drafts.insert(handle, draft);
        Ok(draft)
    }

    /// The node's draft, if it has one (for the C ABI, to recognize a publish from it).
    pub fn draft_of(&self, id: NodeId) -> Option<Loc> {
        // Asked on every publish through the C ABI, mostly with no draft open at all.
        if self.drafts.is_empty() {
            return None;
        }
        self.drafts.get(&self.table.resolve(id).ok()?).copied()
    }

    /// The node's draft becomes its block, `len` bytes long.
    fn adopt_draft(&mut self, handle: u64, len: usize) -> Result<()> {
        let draft = self.drafts.remove(&handle).expect("the caller checked");
        self.drop_working_block(handle)?;
        let s = &mut self.table.slots[handle as usize];
        s.set_loc(draft);
        s.len = len as u32;
        self.mark_dirty(handle);
        Ok(())
    }

    pub fn publish_in_place(&mut self, id: NodeId, len: usize) -> Result<()> {
        let handle = self.table.resolve(id)?;
        self.check_in_place_len(id, self.table.slots[handle as usize].loc(), len)?;
        if self.drafts.contains_key(&handle) {
            return self.adopt_draft(handle, len);
        }
        // Without an earlier write_loc there is no shadow yet: take one now, so the commit
        // logs these bytes as a new version rather than trusting the committed block.
        self.write_loc(id)?;
        self.table.slots[handle as usize].len = len as u32;
        Ok(())
    }

    /// Sets the length of a node whose bytes were just written through `write_loc`'s block
    /// (the node is resolved, shadowed, touched and dirty already).
    pub fn finish_in_place(&mut self, id: NodeId, loc: Loc, len: usize) -> Result<()> {
        self.check_in_place_len(id, loc, len)?;
        self.table.slots[id.handle() as usize].len = len as u32;
        Ok(())
    }

    /// As `write_loc` then `finish_in_place` around `f`, with the node's changes recorded in
    /// its edit script: one is started when this is the node's first change since its
    /// commit, and one the node lacks (new, or changed some other way) is not. `f` must write
    /// through the `Edit` only, and must not have written anything when it fails.
    pub fn update_recorded<R>(&mut self, id: NodeId, f: impl FnOnce(&mut Edit<'_>) -> Result<(usize, R)>) -> Result<R> {
        let handle = self.table.resolve(id)?;
        let loc = self.recorded_write_loc(handle)?;
        let capacity = self.space.capacity(loc.class) as usize;
        // The script is edited where it lies in the map: taking it out and putting it back
        // moved it twice and hashed the handle three times an edit. (An empty map, the most
        // common case, is not searched: a commit of new pages, or nothing recorded yet.)
        let script = if self.scripts.is_empty() { None } else { self.scripts.get_mut(&handle) };
        let mut edit = Edit::new(self.space.read_mut(loc, capacity), script);
        let result = f(&mut edit);
        let dropped = edit.script_dropped();
        if dropped {
            self.drop_script(handle);
        }
        let (len, r) = result?;
        self.finish_in_place(id, loc, len)?;
        Ok(r)
    }

    /// As `write_loc` (a shadow taken now, so that a later write cannot fail for lack of
    /// space), the node's script begun if this is its first change since its commit.
    pub fn prepare_write(&mut self, id: NodeId) -> Result<()> {
        let handle = self.table.resolve(id)?;
        // Nothing is written: a script the node has goes on.
        self.recorded_write_loc(handle).map(drop)
    }

    /// The block for a recorded change of the node, its script begun if this is its first
    /// change since its commit (its committed version is the script's base).
    fn recorded_write_loc(&mut self, handle: u64) -> Result<Loc> {
        let first = self.first_script(handle);
        let loc = self.recorded_write_loc_of(handle)?;
        if let Some(s) = first {
            self.scripts.insert(handle, s);
        }
        Ok(loc)
    }

    /// Whether the node's next recorded edit would be recorded: it has a script, or it is
    /// committed and unchanged since (its first change starts one). A caller with a cheaper
    /// way to make a change it need not record takes that instead.
    pub fn records(&self, id: NodeId) -> bool {
        self.table.resolve(id).is_ok_and(|h| self.scripts.contains_key(&h) || self.needs_shadow(h))
    }

    /// An empty script for a node about to change for the first time since its commit: its
    /// committed version is the base the script's ops apply to.
    fn first_script(&mut self, handle: u64) -> Option<Script> {
        let len = self.table.slots[handle as usize].len as usize;
        self.needs_shadow(handle).then(|| Script::new(len, self.spare_ops.pop().unwrap_or_default()))
    }

    fn drop_script(&mut self, handle: u64) {
        if let Some(s) = self.scripts.remove(&handle) {
            self.keep_ops(s.into_ops());
        }
    }

    /// Ends every script (at a commit, which logged them, and an abort), their buffers kept.
    fn drop_scripts(&mut self) {
        let mut scripts = std::mem::take(&mut self.scripts);
        for (_, s) in scripts.drain() {
            self.keep_ops(s.into_ops());
        }
        scripts.shrink_to(SPARE_OPS_MAX);
        self.scripts = scripts;
    }

    /// Keeps an op buffer for the next script, up to `SPARE_OPS_MAX` of them: a commit that
    /// changed 100,000 pages must not leave 100,000 buffers behind.
    fn keep_ops(&mut self, ops: Vec<u8>) {
        if self.spare_ops.len() < SPARE_OPS_MAX && ops.capacity() <= SPARE_OPS_BYTES_MAX {
            self.spare_ops.push(ops);
        }
    }

    fn check_in_place_len(&self, id: NodeId, loc: Loc, len: usize) -> Result<()> {
        let capacity = self.space.capacity(loc.class) as usize;
        if len > capacity {
            return Err(Error::TooLarge(format!(
                "{len} bytes published in place in node {id}, whose block holds {capacity}"
            )));
        }
        Ok(())
    }

    /// Inlined into `Store::free_then`, as `allocate` is.
    #[inline]
    pub fn free(&mut self, id: NodeId) -> Result<()> {
        let handle = self.table.resolve_for_free(id)?;
        // Most stores have no draft open: no hash of the handle then.
        if !self.drafts.is_empty() {
            if let Some(draft) = self.drafts.remove(&handle) {
                self.space.free(draft)?;
            }
        }
        if self.table.slots[handle as usize].state == State::Reserved {
            return self.release_reserved(handle);
        }
        self.drop_shadow(handle)?;
        self.table.slots[handle as usize].freeing = true;
        self.mark_dirty(handle);
        Ok(())
    }

    /// Frees a node that was never committed: its block now, its handle for reuse (with a new
    /// tag, so its id goes stale).
    #[inline]
    fn release_reserved(&mut self, handle: u64) -> Result<()> {
        self.space.free(self.table.slots[handle as usize].loc())?;
        let s = &mut self.table.slots[handle as usize];
        s.state = State::Free;
        s.dirty = false;
        self.table.release_handle(handle);
        self.reserved_nodes -= 1;
        Ok(())
    }

    /// Frees a committed node's private copy, if it has one, and makes the committed version
    /// (block, length, checksum) its current one again.
    fn drop_shadow(&mut self, handle: u64) -> Result<()> {
        if let Some(committed) = self.table.shadowed.remove(&handle) {
            self.space.free(self.table.slots[handle as usize].loc())?;
            let s = &mut self.table.slots[handle as usize];
            s.set_loc(committed.loc);
            s.len = committed.len;
            s.crc = committed.crc;
        }
        Ok(())
    }

    pub fn retire(&mut self, id: NodeId, epoch: u64) -> Result<()> {
        self.table.resolve(id)?;
        self.retired.push((epoch, id));
        Ok(())
    }

    pub fn set_root(&mut self, name: &[u8], id: u64, meta: &[u8]) -> Result<()> {
        if name.len() > ROOT_NAME_MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "root name of {} bytes; at most {ROOT_NAME_MAX_BYTES}",
                name.len()
            )));
        }
        if meta.len() > ROOT_META_MAX_BYTES {
            return Err(Error::InvalidArgument(format!(
                "root metadata of {} bytes; at most {ROOT_META_MAX_BYTES}",
                meta.len()
            )));
        }
        if let Some(h) = self.hot_roots.iter_mut().find(|h| h.name == name) {
            h.id = id;
            h.meta.clear();
            h.meta.extend_from_slice(meta);
            h.ahead = true;
            return Ok(());
        }
        let count = self.roots.len();
        match self.roots.get_mut(name) {
            // The common case (a tree saving its anchor after each change): no allocation.
            Some(root) => {
                root.0 = id;
                root.1.clear();
                root.1.extend_from_slice(meta);
            }
            None if count >= ROOT_COUNT_MAX => {
                return Err(Error::Limit(format!("a store holds at most {ROOT_COUNT_MAX} roots")));
            }
            None => {
                self.roots.insert(name.to_vec(), (id, meta.to_vec()));
            }
        }
        if !self.dirty_roots.contains(name) {
            self.dirty_roots.insert(name.to_vec());
        }
        if !self.removed_roots.is_empty() {
            self.removed_roots.remove(name);
        }
        if self.hot_roots.len() < HOT_ROOTS_MAX {
            self.hot_roots.push(HotRoot { name: name.to_vec(), id, meta: meta.to_vec(), ahead: false });
        }
        Ok(())
    }

    /// Removes a root: `get_root` no longer finds it, and the next commit logs its removal
    /// (when it was committed). False when there is no such root.
    pub fn remove_root(&mut self, name: &[u8]) -> bool {
        if self.roots.remove(name).is_none() {
            return false;
        }
        self.hot_roots.retain(|h| h.name != name);
        self.dirty_roots.remove(name);
        if self.committed_roots.contains_key(name) {
            self.removed_roots.insert(name.to_vec());
        }
        true
    }

    /// Frees every node of `ids` or none: all are checked (each one freeable, none twice)
    /// before the first is freed.
    pub fn free_all(&mut self, ids: &[NodeId]) -> Result<()> {
        let mut handles = BTreeSet::new();
        for &id in ids {
            if !handles.insert(self.table.resolve_for_free(id)?) {
                return Err(Error::DoubleFree(format!("node {id} is listed twice")));
            }
        }
        for &id in ids {
            self.free(id)?;
        }
        Ok(())
    }

    /// A root as last set: its node id and metadata.
    pub fn root(&self, name: &[u8]) -> Option<(u64, &[u8])> {
        match self.hot_roots.iter().find(|h| h.ahead && h.name == name) {
            Some(h) => Some((h.id, &h.meta)),
            None => self.roots.get(name).map(|(id, meta)| (*id, meta.as_slice())),
        }
    }

    /// The names of all roots, in byte order.
    pub fn root_names(&self) -> impl Iterator<Item = &Vec<u8>> {
        self.roots.keys()
    }

    /// Moves the hot roots' newer values into `roots` (and `dirty_roots`), for a commit.
    fn flush_hot_roots(&mut self) {
        for h in self.hot_roots.iter_mut().filter(|h| h.ahead) {
            h.ahead = false;
            if let Some(root) = self.roots.get_mut(&h.name) {
                root.0 = h.id;
                root.1.clone_from(&h.meta);
            }
            if !self.dirty_roots.contains(&h.name) {
                self.dirty_roots.insert(h.name.clone());
            }
        }
    }

    pub fn info(&self, id: NodeId) -> Result<NodeInfo> {
        let handle = self.table.resolve(id)?;
        let s = &self.table.slots[handle as usize];
        Ok(NodeInfo {
            id,
            len: s.len as usize,
            capacity: self.space.capacity(s.class) as usize,
            kind: s.kind,
            committed: s.state == State::Live,
            dirty: s.dirty,
        })
    }

    /// Backup: puts a copied node at exactly `handle` (the next one the table issues, so a
    /// copy keeps every id), with its tag, kind and class, as a node the next commit makes
    /// live. The copy's blocks are taken in handle order from empty class files: densely.
    pub fn restore(&mut self, handle: u64, tag: u16, kind: u8, class: u8, bytes: &[u8]) -> Result<()> {
        self.expect_next_handle(handle)?;
        let loc = self.space.allocate(class)?;
        self.space.write(loc, bytes);
        self.table.slots.push(Slot::reserved(loc, bytes.len() as u32, tag, kind));
        self.mark_dirty(handle);
        self.reserved_nodes += 1;
        Ok(())
    }

    /// Backup: a handle that had no node in the copied commit, free in the copy, with the
    /// tag it had last (so the copy never issues an id the original issued before).
    pub fn restore_free(&mut self, handle: u64, tag: u16) -> Result<()> {
        self.expect_next_handle(handle)?;
        self.table.slots.push(Slot { tag, ..Slot::EMPTY });
        Ok(())
    }

    /// Backup: after the last `restore`, the free handles become reusable.
    pub fn restored(&mut self) {
        self.table.rebuild_free_list();
    }

    fn expect_next_handle(&self, handle: u64) -> Result<()> {
        let next = self.table.handle_count();
        if handle != next {
            return Err(Error::Internal(format!("restoring handle {handle} into a table of {next} handles")));
        }
        Ok(())
    }

    /// The node's latest version (`at` None) or the one commit `at` left.
    #[inline(always)]
    pub fn read_loc_in(&self, id: NodeId, at: Option<u64>) -> Result<(Loc, usize)> {
        match at {
            None => self.read_loc(id),
            Some(epoch) => self.read_loc_at(id, epoch),
        }
    }

    #[inline(always)]
    pub fn read_loc(&self, id: NodeId) -> Result<(Loc, usize)> {
        let handle = self.table.resolve(id)?;
        let s = &self.table.slots[handle as usize];
        if self.verify_reads && s.state == State::Live && !s.dirty {
            self.check_payload(handle)?;
        }
        Ok((s.loc(), s.len as usize))
    }

    /// The committed version of a handle as the table has it (its latest commit), if any.
    fn committed_version(&self, handle: u64) -> Option<Version> {
        let s = self.table.slots.get(handle as usize)?;
        let c = self.table.committed(handle)?;
        Some(Version { tag: s.tag, kind: s.kind, loc: c.loc, len: c.len, crc: c.crc })
    }

    /// The version of node `id` that commit `epoch` left (an epoch a snapshot pins, so its
    /// blocks are still there), or `NotFound` when no node had that id then.
    #[inline]
    pub fn version_at(&self, id: NodeId, epoch: u64) -> Result<Version> {
        match self.handle_version_at(id.handle(), epoch) {
            Some(v) if v.tag == id.tag() => Ok(v),
            _ => Err(super::table::unknown_node(id)),
        }
    }

    /// The version of whatever node `handle` held when commit `epoch` applied (an epoch a
    /// snapshot pins), or `None` when it held none.
    #[inline]
    pub fn handle_version_at(&self, handle: u64, epoch: u64) -> Option<Version> {
        match self.history.at(handle, epoch) {
            Some(v) => v,
            None if handle == 0 => None,
            None => self.committed_version(handle),
        }
    }

    /// [`Core::version_at`]'s block and length, its bytes checked against their checksum
    /// when reads verify.
    #[inline]
    pub fn read_loc_at(&self, id: NodeId, epoch: u64) -> Result<(Loc, usize)> {
        let v = self.version_at(id, epoch)?;
        if self.verify_reads && !self.version_intact(id.handle(), epoch, &v) {
            let (file, offset) = self.space.file_position(v.loc);
            return Err(Error::corrupt(
                file,
                offset,
                format!("node {id}: its {} bytes (as of epoch {epoch}) do not match their checksum", v.len),
            ));
        }
        Ok((v.loc, v.len as usize))
    }

    /// True when the bytes of `v`, the version of `handle` that commit `epoch` left, match
    /// their checksum (its group's, while its own is not known).
    pub fn version_intact(&self, handle: u64, epoch: u64, v: &Version) -> bool {
        let seals = &self.table.seals;
        if self.history.at(handle, epoch).is_none() && (seals.is_unknown(handle) || seals.is_suspect(handle)) {
            return self.check_payload(handle).is_ok();
        }
        crc(self.space.read(v.loc, v.len as usize)) == v.crc
    }

    /// Checks a LIVE node's committed bytes against the checksum its commit recorded (or, not
    /// known since the open, against its group's, `seal.rs`): `Corrupt` naming the node, its
    /// class file and the block's offset on a mismatch.
    pub fn check_payload(&self, handle: u64) -> Result<()> {
        let Some(c) = self.table.committed(handle) else { return Ok(()) };
        let seals = &self.table.seals;
        let what = if seals.is_suspect(handle) {
            "its group's checksum did not match when first checked, so its bytes cannot be trusted until rewritten"
        } else if seals.is_unknown(handle) {
            if self.verify_group(handle).ok {
                return Ok(());
            }
            "its group's checksum does not match: this node's bytes or another's of the group are damaged"
        } else if crc(self.space.read(c.loc, c.len as usize)) == c.crc {
            return Ok(());
        } else {
            "its bytes do not match their checksum"
        };
        let (file, offset) = self.space.file_position(c.loc);
        let group = Seals::members(handle);
        Err(Error::corrupt(
            file,
            offset,
            format!(
                "node {}: {what} ({} bytes; group of handles {}..{})",
                self.table.id_of(handle),
                c.len,
                group.start,
                group.end
            ),
        ))
    }

    /// `check_payload` of every handle, at most `limit` mismatches: a group whose CRCs are
    /// not known is verified once, not once per member (a store just opened has only such).
    pub fn check_all(&self, limit: usize) -> Vec<Error> {
        let (mut found, count) = (Vec::new(), self.table.handle_count());
        let mut group = Seals::members(1);
        while group.start < count && found.len() < limit {
            let verified = self.table.seals.group_unverified(group.start) && self.verify_group(group.start).ok;
            for h in group.clone().filter(|&h| h > 0 && h < count) {
                if verified && self.table.seals.is_unknown(h) {
                    continue;
                }
                found.extend(self.check_payload(h).err());
            }
            group = Seals::members(group.end);
        }
        found.truncate(limit);
        found
    }

    /// The group of `handle` checked against its checksum, the CRCs of members not known yet
    /// computed from their committed bytes (read, never cached: readers share the state).
    fn verify_group(&self, handle: u64) -> seal::Verified {
        let seals = &self.table.seals;
        seal::verify(seals, handle, |h| {
            if h >= self.table.handle_count() {
                return None;
            }
            let c = self.table.committed(h)?;
            Some(if seals.is_unknown(h) { crc(self.space.read(c.loc, c.len as usize)) } else { c.crc })
        })
    }

    /// Before a member of a group whose CRCs are not all known changes: verifies the group,
    /// its members' CRCs become known (or, on a mismatch, the unknown ones suspect), so the
    /// group's check can be made again from known CRCs at the next checkpoint.
    fn settle_group(&mut self, handle: u64) {
        if !self.table.seals.group_unverified(handle) {
            return;
        }
        let v = self.verify_group(handle);
        if v.ok {
            for &(h, c) in &v.members[..v.count] {
                match self.table.shadowed.get_mut(&h) {
                    Some(committed) => committed.crc = c,
                    None => self.table.slots[h as usize].crc = c,
                }
            }
        }
        if !v.ok {
            // Their entries must say so: the group's next check leaves them out.
            let newly = self.table.seals.unknown[seal::group_of(handle)];
            let members = Seals::members(handle).filter(|&h| newly & (1 << (h % seal::GROUP)) != 0);
            self.changed_since_checkpoint.extend(members);
        }
        self.table.seals.verified(handle, v.ok);
    }

    /// Frees the retired nodes whose epoch has come. They leave the list when the commit
    /// applies: a commit that fails, then an abort, must find the committed list whole.
    fn free_due_retired(&mut self, epoch: u64) {
        let due: Vec<NodeId> = self.retired.iter().filter(|&&(e, _)| e <= epoch).map(|&(_, id)| id).collect();
        for id in due {
            // Freed or reallocated by the host since (or by a commit that failed, retried
            // now): nothing left to do for that id.
            let _ = self.free(id);
        }
    }

    /// Builds the next commit's frame, in `buffer` (see `FrameBuilder::with_buffer`). Nothing
    /// is marked committed until `apply_commit`. Payloads over `inline_max` are not logged
    /// but synced before the frame; so are new nodes when they add up to `bulk_min` bytes
    /// or more (a bulk load: written once, into their blocks, as LMDB writes its pages,
    /// rather than into the log and again at the checkpoint).
    pub fn prepare_commit(&mut self, inline_max: usize, bulk_min: usize, buffer: Vec<u8>) -> PreparedCommit {
        self.flush_hot_roots();
        let epoch = self.epoch + 1;
        self.free_due_retired(epoch);
        self.dirty.sort();
        for i in 0..self.dirty.len() {
            let handle = self.dirty[i];
            if self.table.slots[handle as usize].dirty {
                self.settle_group(handle);
            }
        }
        let new_bytes: usize = self
            .dirty
            .iter()
            .map(|&h| self.table.slots[h as usize])
            .filter(|s| s.dirty && !s.freeing && s.state == State::Reserved && s.len as usize <= inline_max)
            .map(|s| s.len as usize)
            .sum();
        let bulk = new_bytes >= bulk_min;
        let logged = |s: &Slot| s.len as usize <= inline_max && !(bulk && s.state == State::Reserved);
        let body_bytes: usize = self
            .dirty
            .iter()
            .map(|&h| self.table.slots[h as usize])
            .filter(|s| s.dirty)
            .map(|s| FrameBuilder::put_bytes(if logged(&s) { s.len as usize } else { 0 }))
            .sum::<usize>()
            + self
                .dirty_roots
                .iter()
                .map(|name| FrameBuilder::root_bytes(name.len(), self.roots[name].1.len()))
                .sum::<usize>()
            + self.removed_roots.iter().map(|name| FrameBuilder::root_remove_bytes(name.len())).sum::<usize>();
        let mut frame = FrameBuilder::with_buffer(buffer, body_bytes);
        let mut unlogged = Vec::new();
        let mut frees_sole_copies = false;
        self.plan.clear();
        for &handle in &self.dirty {
            let s = self.table.slots[handle as usize];
            if !s.dirty {
                continue; // a reserved node freed before the commit
            }
            // A version synced in its block is held when a delta or script is logged against
            // it; freed or replaced whole, its block is reusable once this commit is durable.
            let sole_copy = s.origin == Origin::Synced;
            if s.freeing {
                frees_sole_copies |= sole_copy;
                frame.free(handle, s.tag);
                continue;
            }
            let payload = self.space.read(s.loc(), s.len as usize);
            // A delta needs a base recovery can read: one the log rebuilds, or one in its
            // block (checkpointed, or synced at its commit), held until the next checkpoint.
            let base = self.table.shadowed.get(&handle);
            let script = self.scripts.get(&handle).filter(|_| base.is_some_and(|c| c.len == s.len));
            // A logged node with a base may go as a delta, whose CRC is worked out from the
            // base's once the delta is known (`delta_crc`): not computed whole first.
            let deferred = script.is_none() && base.is_some() && logged(&s);
            let payload_crc = match (script, base) {
                (Some(script), Some(c)) => self.scripted_crc(handle, c, script, payload),
                _ if deferred => 0,
                _ => crc(payload),
            };
            // Only trusted once the slot is clean, i.e. after this commit applies.
            self.table.slots[handle as usize].crc = payload_crc;
            let mut put = PutOp {
                handle,
                tag: s.tag,
                kind: s.kind,
                class: s.class,
                block: s.block,
                len: s.len,
                payload_crc,
                payload: super::wal::Payload::Unlogged,
            };
            if !logged(&s) {
                frame.put(&put, None);
                unlogged.push((s.loc(), payload.len()));
                self.plan.push((handle, Origin::Synced, false));
                frees_sole_copies |= sole_copy;
                continue;
            }
            if let (Some(script), Some(c)) = (script, base) {
                if cfg!(any(test, debug_assertions)) {
                    assert!(script.replays(self.space.read(c.loc, c.len as usize), payload), "node {handle}'s script");
                }
                frame.put_script(&put, script);
                self.plan.push((handle, Origin::Logged, s.origin != Origin::Logged));
                continue;
            }
            let delta = base.is_some_and(|c| frame.put_delta(&put, self.space.read(c.loc, c.len as usize), payload));
            if delta {
                let c = base.expect("a delta has a base");
                put.payload_crc =
                    self.delta_crc(handle, c, frame.last_put_payload(), payload).unwrap_or_else(|| crc(payload));
                frame.set_last_put_crc(put.payload_crc);
            } else if deferred {
                put.payload_crc = crc(payload);
            }
            self.table.slots[handle as usize].crc = put.payload_crc;
            if !delta && !frame.put_sparse(&put, payload) {
                frame.put_in_place(&put, s.loc());
            }
            self.plan.push((handle, Origin::Logged, delta && s.origin != Origin::Logged));
            frees_sole_copies |= sole_copy && !delta;
        }
        for name in &self.dirty_roots {
            let (id, meta) = &self.roots[name];
            frame.root(name, *id, meta);
        }
        for name in &self.removed_roots {
            frame.root_remove(name);
        }
        PreparedCommit { epoch, frame: frame.finish_parts(epoch), unlogged, frees_sole_copies }
    }

    /// The CRC of a node's new version `payload`, updated from its base's (`c`) over the ranges
    /// its script wrote (`crc_update.rs`), or computed whole when the base's CRC is not known
    /// to be its own or a range lies past the node (its script is then refused at recovery,
    /// as it was before).
    fn scripted_crc(&self, handle: u64, c: &Committed, script: &Script, payload: &[u8]) -> u32 {
        self.crc_from_base(handle, c, payload, script.changed()).unwrap_or_else(|| crc(payload))
    }

    /// The CRC of a node's new version `payload` logged as `delta` against its base `c`,
    /// updated from the base's over the ranges the delta writes, when the base's CRC is its
    /// own and as long as the node (`None` otherwise: the caller computes it whole). The two
    /// differ only over a base damaged in its block, whose damage the whole CRC would seal as
    /// good (an outside tester's `remove` of an entry in a damaged leaf did).
    fn delta_crc(&self, handle: u64, c: &Committed, delta: &[u8], payload: &[u8]) -> Option<u32> {
        let mut changed = crc_update::Changed::default();
        super::delta::changed_ranges(delta, &mut changed)?;
        self.crc_from_base(handle, c, payload, &changed)
    }

    /// `crc_update::updated` from the base's committed CRC, or `None` when that CRC is not
    /// known to be its own (its group unverified or failed its check), the lengths differ, or
    /// a range lies past the node.
    fn crc_from_base(&self, handle: u64, c: &Committed, payload: &[u8], changed: &crc_update::Changed) -> Option<u32> {
        let seals = &self.table.seals;
        let within = changed.ranges().last().is_none_or(|r| r.end <= payload.len());
        if seals.is_suspect(handle) || seals.is_unknown(handle) || !within || c.len as usize != payload.len() {
            return None;
        }
        let base = self.space.read(c.loc, c.len as usize);
        let updated = crc_update::updated(c.crc, base, payload, changed.ranges());
        if cfg!(any(test, debug_assertions)) {
            assert!(updated == crc(payload) || crc(base) != c.crc, "node {handle}'s CRC from its changed ranges");
        }
        Some(updated)
    }

    /// Marks everything in the prepared commit as committed at `epoch`. With `keep_history`
    /// (a snapshot is open) the versions it replaces are recorded for the snapshots.
    pub fn apply_commit(&mut self, epoch: u64, keep_history: bool) {
        assert_eq!(epoch, self.epoch + 1, "commits apply in order");
        if keep_history {
            let replaced = self
                .dirty
                .iter()
                .filter(|&&h| self.table.slots[h as usize].dirty)
                .map(|&h| (h, self.committed_version(h)))
                .collect();
            self.history.record(epoch, replaced);
        }
        // Taken and put back empty, so the next commit's list grows in the same allocation.
        let mut dirty = std::mem::take(&mut self.dirty);
        let mut relocated = std::mem::take(&mut self.relocated);
        relocated.sort_unstable();
        // Old blocks of relocated nodes, queued after the rest with the next epoch (grace).
        let mut late: Vec<(bool, Loc)> = Vec::new();
        for &handle in &dirty {
            let s = self.table.slots[handle as usize];
            if !s.dirty {
                continue;
            }
            self.table.seals.settle(handle);
            if s.freeing {
                if s.origin == Origin::Checkpoint {
                    self.changed_since_checkpoint.push(handle); // its entry becomes free
                }
                if s.origin == Origin::Checkpoint && self.hold_checkpointed {
                    // Its group's check covers it until the next checkpoint (`seal.rs`).
                    self.hold_base(epoch, s.loc());
                } else {
                    self.defer_free(epoch, s.loc());
                }
                let slot = &mut self.table.slots[handle as usize];
                slot.state = State::Free;
                slot.freeing = false;
                slot.dirty = false;
                self.table.release_handle(handle);
                self.live_nodes -= 1;
                continue;
            }
            let (origin, hold_base) = self.planned(handle);
            // A checkpointed version stays until the next checkpoint: recovery verifies its
            // group against the check that covers it before replaying what replaced it.
            let hold_base = hold_base || (s.origin == Origin::Checkpoint && self.hold_checkpointed);
            if let Some(old) = self.table.shadowed.remove(&handle) {
                if relocated.binary_search(&handle).is_ok() {
                    late.push((hold_base, old.loc));
                } else if hold_base {
                    self.hold_base(epoch, old.loc);
                } else {
                    self.defer_free(epoch, old.loc);
                }
            }
            if s.origin == Origin::Checkpoint && origin != Origin::Checkpoint {
                self.changed_since_checkpoint.push(handle);
            }
            self.table.slots[handle as usize].origin = origin;
            if s.state == State::Reserved {
                self.reserved_nodes -= 1;
                self.live_nodes += 1;
            }
            let slot = &mut self.table.slots[handle as usize];
            slot.state = State::Live;
            slot.dirty = false;
        }
        dirty.clear();
        self.dirty = dirty;
        self.drop_scripts();
        for (hold, loc) in late {
            if hold {
                self.hold_base(epoch + 1, loc);
            } else {
                self.defer_free(epoch + 1, loc);
            }
        }
        relocated.clear();
        self.relocated = relocated;
        debug_assert!(self.table.shadowed.is_empty(), "every shadowed node is dirty");
        if !self.dirty_roots.is_empty() || !self.removed_roots.is_empty() {
            let committed = Arc::make_mut(&mut self.committed_roots);
            for name in std::mem::take(&mut self.dirty_roots) {
                let root = self.roots[&name].clone();
                committed.insert(name, root);
            }
            for name in std::mem::take(&mut self.removed_roots) {
                committed.remove(&name);
            }
        }
        self.retired.retain(|&(due, _)| due > epoch);
        self.retired_committed = self.retired.len();
        self.epoch = epoch;
    }

    /// Undoes every change since the last commit: nodes allocated since are freed (their ids
    /// stale), published and in-place versions dropped for the committed ones, frees and
    /// retirements withdrawn, roots as committed. Blocks freed by earlier commits and not yet
    /// durable stay pending: they belong to the committed past, not to what is undone.
    pub fn abort(&mut self) -> Result<()> {
        self.relocated.clear();
        self.drop_scripts();
        for (_, draft) in std::mem::take(&mut self.drafts) {
            self.space.free(draft)?;
        }
        self.dirty.sort();
        for &handle in std::mem::take(&mut self.dirty).iter() {
            let s = self.table.slots[handle as usize];
            if !s.dirty {
                continue; // reserved, then freed before the abort: already released
            }
            if s.state == State::Reserved {
                self.release_reserved(handle)?;
                continue;
            }
            self.drop_shadow(handle)?;
            let slot = &mut self.table.slots[handle as usize];
            slot.freeing = false;
            slot.dirty = false;
        }
        debug_assert!(self.table.shadowed.is_empty(), "every shadowed node is dirty");
        self.roots = (*self.committed_roots).clone();
        self.hot_roots.clear();
        self.dirty_roots.clear();
        self.removed_roots.clear();
        self.retired.truncate(self.retired_committed);
        Ok(())
    }

    /// The prepared commit's decision for a PUT of `handle` (see `plan`).
    fn planned(&self, handle: u64) -> (Origin, bool) {
        match self.plan.binary_search_by_key(&handle, |p| p.0) {
            Ok(i) => (self.plan[i].1, self.plan[i].2),
            // Every PUT is planned; were one not, `Synced` is the safe answer: no delta is ever
            // logged against it, and holding nothing is right for a version not delta-logged.
            Err(_) => {
                debug_assert!(false, "handle {handle} applied without a plan");
                (Origin::Synced, false)
            }
        }
    }

    fn defer_free(&mut self, epoch: u64, loc: Loc) {
        self.pending_free_bytes += u64::from(self.space.capacity(loc.class));
        self.queued_blocks[loc.class as usize] += 1;
        self.pending_frees.push_back((epoch, loc));
    }

    /// Bytes of blocks freed by commits after `limit` and up to `upto`.
    pub fn pending_bytes_between(&self, limit: u64, upto: u64) -> u64 {
        self.pending_frees
            .iter()
            .filter(|&&(epoch, _)| epoch > limit && epoch <= upto)
            .map(|&(_, loc)| u64::from(self.space.capacity(loc.class)))
            .sum()
    }

    fn hold_base(&mut self, epoch: u64, loc: Loc) {
        self.held_base_bytes += u64::from(self.space.capacity(loc.class));
        self.queued_blocks[loc.class as usize] += 1;
        self.held_bases.push_back((epoch, loc));
    }

    /// The epoch a block a node moved from at rest counts as freed by, for a reader process
    /// that may still read it: the next commit's, which a reader of this epoch holds back.
    fn moved_at_rest_freed_by(&self) -> u64 {
        self.epoch + 1
    }

    /// Holds a block a node moved from at rest until the next checkpoint (`checkpointed`),
    /// counted with the held bases.
    pub(super) fn hold_moved_at_rest(&mut self, loc: Loc) {
        self.held_base_bytes += u64::from(self.space.capacity(loc.class));
        self.queued_blocks[loc.class as usize] += 1;
        self.moved_at_rest.push(loc);
    }

    /// The newest freeing epoch whose blocks in `queue` may be reused, given `limit`: the
    /// newest durable epoch, lowered to the oldest commit a snapshot or a reader process
    /// still reads (`Shared::reuse_limit`). With it, the one place that decides when a freed
    /// block is reusable.
    fn reusable_through(&self, queue: FreeQueue, limit: u64) -> u64 {
        match queue {
            FreeQueue::Durable => limit,
            FreeQueue::Checkpoint => limit.min(self.checkpoint_epoch),
        }
    }

    fn queue(&mut self, queue: FreeQueue) -> (&mut VecDeque<(u64, Loc)>, &mut u64) {
        match queue {
            FreeQueue::Durable => (&mut self.pending_frees, &mut self.pending_free_bytes),
            FreeQueue::Checkpoint => (&mut self.held_bases, &mut self.held_base_bytes),
        }
    }

    /// True when some freed block waits to be released, now or later.
    #[inline]
    pub fn frees_queued(&self) -> bool {
        !self.pending_frees.is_empty() || !self.held_bases.is_empty()
    }

    /// True when some freed block waits to be released and may be now.
    pub fn frees_releasable(&self, limit: u64) -> bool {
        let due = |q: &VecDeque<(u64, Loc)>, kind| {
            q.front().is_some_and(|&(epoch, _)| epoch <= self.reusable_through(kind, limit))
        };
        due(&self.pending_frees, FreeQueue::Durable) || due(&self.held_bases, FreeQueue::Checkpoint)
    }

    /// Returns to the allocator every freed block that may be reused now.
    pub fn release_frees(&mut self, limit: u64) -> Result<()> {
        for kind in [FreeQueue::Durable, FreeQueue::Checkpoint] {
            let through = self.reusable_through(kind, limit);
            loop {
                let (q, _) = self.queue(kind);
                let Some((_, loc)) = q.front().copied().filter(|&(e, _)| e <= through) else { break };
                q.pop_front();
                let block_bytes = u64::from(self.space.capacity(loc.class));
                *self.queue(kind).1 -= block_bytes;
                self.queued_blocks[loc.class as usize] -= 1;
                self.space.free(loc)?;
            }
        }
        Ok(())
    }

    /// Handles whose entry the next checkpoint must write: changed since the last one (put
    /// or freed), or given a new tag; sorted, without duplicates.
    pub fn changed_handles(&self) -> Vec<u64> {
        let mut changed: Vec<u64> = self.changed_since_checkpoint.iter().chain(&self.table.retagged).copied().collect();
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// Adds handles for the next checkpoint to write (what recovery replayed as freed).
    pub fn note_changed(&mut self, handles: &[u64]) {
        self.changed_since_checkpoint.extend_from_slice(handles);
    }

    /// A checkpoint of the committed state at `epoch` is on disk, every committed block
    /// flushed: committed versions are now bases, and what they replaced is reusable (up to
    /// `limit`, which snapshots and readers may hold lower; see `release_frees`).
    /// With `moved_read`, a reader process may read the blocks nodes moved from at rest
    /// (it opened the generation before): they are freed as by the next commit, which the
    /// reader's registered epoch holds back.
    pub fn checkpointed(&mut self, epoch: u64, limit: u64, moved_read: bool) -> Result<()> {
        debug_assert_eq!(epoch, self.epoch, "a checkpoint records the last commit");
        self.checkpoint_epoch = epoch;
        for handle in std::mem::take(&mut self.changed_since_checkpoint) {
            self.table.slots[handle as usize].origin = Origin::Checkpoint;
        }
        self.table.clear_retagged();
        for loc in std::mem::take(&mut self.moved_at_rest) {
            self.held_base_bytes -= u64::from(self.space.capacity(loc.class));
            self.queued_blocks[loc.class as usize] -= 1;
            if moved_read {
                self.defer_free(self.moved_at_rest_freed_by(), loc);
            } else {
                self.space.free(loc)?;
            }
        }
        self.release_frees(limit)
    }

    /// Every block something owns: the current block of every node, the committed block of
    /// every node changed since, and the blocks freed by commits but not yet reusable.
    fn owned_blocks(&self) -> Vec<Loc> {
        let mut owned: Vec<Loc> = Vec::with_capacity(self.table.slots.len());
        for (h, s) in self.table.slots.iter().enumerate() {
            if s.state != State::Free {
                owned.push(s.loc());
            }
            if let Some(c) = self.table.shadowed.get(&(h as u64)) {
                owned.push(c.loc);
            }
        }
        owned.extend(self.pending_frees.iter().chain(&self.held_bases).map(|&(_, l)| l));
        owned.extend_from_slice(&self.moved_at_rest);
        owned.extend(self.drafts.values().copied());
        owned
    }

    /// For a writer that opens while a reader process reads commit `oldest`, older than the
    /// one opened: keeps from reuse the blocks of `frees` (epoch, block: freed by that commit)
    /// that were freed after `oldest`, queued as the commits that freed them queued them, so
    /// they become reusable as the readers move on; the rest of the class files is free at
    /// once. A block listed twice was reused in between and freed again: its later free
    /// counts. A block a node owns now was let go of and reused since: nobody older reads it.
    pub fn hold_freed_after(&mut self, oldest: u64, frees: Vec<(u64, Loc)>) -> Result<()> {
        debug_assert!(self.pending_frees.is_empty() && self.held_bases.is_empty(), "called at the open");
        let mut latest: BTreeMap<Loc, u64> = BTreeMap::new();
        for (epoch, loc) in frees.into_iter().filter(|&(e, _)| e > oldest) {
            let e = latest.entry(loc).or_insert(epoch);
            *e = (*e).max(epoch);
        }
        let mut held: Vec<(u64, Loc)> = latest
            .into_iter()
            .filter(|&(loc, _)| self.space.covers(loc) && !self.space.is_allocated(loc))
            .map(|(loc, epoch)| (epoch, loc))
            .collect();
        held.sort_unstable();
        let mut per_class = vec![Vec::new(); self.space.classes().count()];
        for loc in self.owned_blocks().into_iter().chain(held.iter().map(|&(_, l)| l)) {
            per_class[loc.class as usize].push(loc.block);
        }
        self.space.rebuild(&per_class)?;
        for (epoch, loc) in held {
            self.defer_free(epoch, loc);
        }
        Ok(())
    }

    /// The frees a checkpoint records as waiting: blocks freed by commits after `floor`, the
    /// oldest commit a reader process read when the table was last looked at, which such a
    /// reader may still read (one that registered since reads a newer commit). While every
    /// block is held for older readers (`hold_for_old_readers`), those blocks too, as if
    /// freed by the commit opened then.
    pub fn waiting_frees(&self, floor: u64) -> Vec<(u64, Loc)> {
        let mut waiting: Vec<(u64, Loc)> =
            self.pending_frees.iter().chain(&self.held_bases).copied().filter(|&(e, _)| e > floor).collect();
        // The checkpoint recording moves at rest: the blocks the nodes moved from, which a
        // reader of the same epoch may read (it opened the checkpoint before), as
        // `checkpointed` frees them when a reader is there.
        let freed_by = self.moved_at_rest_freed_by();
        waiting.extend(self.moved_at_rest.iter().map(|&loc| (freed_by, loc)));
        if let Some(before) = self.held_for_readers_before.filter(|&b| b > floor) {
            let mut owned = self.owned_blocks();
            owned.sort_unstable();
            let unowned = self.space.allocated().into_iter().filter(|l| owned.binary_search(l).is_err());
            waiting.extend(unowned.map(|loc| (before, loc)));
        }
        waiting
    }

    /// Keeps every block the class files hold now from reuse until no reader process older
    /// than `epoch` is left (see [`Core::end_hold_once_readers_passed`]). For a writer that
    /// opens while such a reader lives: the commits between the reader's and `epoch` freed
    /// blocks the reader still reads, and the writer that freed them, with its list of them,
    /// is gone. New blocks come from new segments meanwhile.
    pub fn hold_for_old_readers(&mut self, epoch: u64) -> Result<()> {
        self.space.hold_all()?;
        self.held_for_readers_before = Some(epoch);
        let allocated: u64 = (0..self.space.classes().count() as u8)
            .map(|class| self.space.allocated_blocks(class) * u64::from(self.space.capacity(class)))
            .sum();
        let owned: u64 = self.owned_blocks().iter().map(|l| u64::from(self.space.capacity(l.class))).sum();
        self.held_for_readers_bytes = allocated.saturating_sub(owned);
        Ok(())
    }

    /// Ends [`Core::hold_for_old_readers`] once the oldest live reader reads `epoch` or later:
    /// the allocator is rebuilt from what the table owns.
    pub fn end_hold_once_readers_passed(&mut self, oldest_reader: Option<u64>) -> Result<()> {
        let Some(before) = self.held_for_readers_before else { return Ok(()) };
        if oldest_reader.is_some_and(|o| o < before) {
            return Ok(());
        }
        let mut per_class = vec![Vec::new(); self.space.classes().count()];
        for loc in self.owned_blocks() {
            per_class[loc.class as usize].push(loc.block);
        }
        self.space.rebuild(&per_class)?;
        self.held_for_readers_before = None;
        self.held_for_readers_bytes = 0;
        Ok(())
    }

    /// True while blocks are held for reader processes of older commits.
    pub fn held_for_readers(&self) -> bool {
        self.held_for_readers_before.is_some()
    }

    /// Every block the table refers to is allocated exactly once, and nothing else is (but
    /// the blocks held for old readers).
    pub fn verify(&self) -> Result<()> {
        self.space.verify()?;
        let mut owned = self.owned_blocks();
        owned.sort_unstable();
        if let Some(w) = owned.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::Internal(format!("block {:?} is owned twice", w[0])));
        }
        if let Some(l) = owned.iter().find(|&&l| !self.space.is_allocated(l)) {
            return Err(Error::Internal(format!("block {l:?} is in use but free in the allocator")));
        }
        let allocated: u64 = self.space.stats().iter().map(|c| c.live_bytes / c.class_bytes).sum();
        if allocated != owned.len() as u64 && !self.held_for_readers() {
            return Err(Error::Internal(format!(
                "{allocated} blocks allocated but {} referenced: a leak",
                owned.len()
            )));
        }
        Ok(())
    }
}

#[cold]
#[inline(never)]
fn kind_zero() -> Error {
    Error::InvalidArgument("node kind 0 is reserved as invalid".into())
}

pub(crate) fn check_root_name(name: &[u8]) -> Result<()> {
    if name.len() > ROOT_NAME_MAX_BYTES {
        return Err(Error::InvalidArgument(format!(
            "root name of {} bytes; at most {ROOT_NAME_MAX_BYTES}",
            name.len()
        )));
    }
    Ok(())
}

/// `offset + len` within a block of `capacity` bytes.
fn check_source_range(id: NodeId, offset: usize, len: usize, capacity: usize) -> Result<()> {
    if offset.checked_add(len).is_none_or(|end| end > capacity) {
        return Err(Error::InvalidArgument(format!(
            "source range {offset}+{len} is outside node {id}'s block of {capacity} bytes"
        )));
    }
    Ok(())
}

/// A request length that selects `class` exactly.
fn class_floor_len(core: &Core, class: u8) -> usize {
    core.space.capacity(class) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreOptions;

    /// A host that allocates and frees without committing (a ring of live nodes, as an
    /// allocator benchmark runs) keeps the dirty list at the handles it uses, each once, not
    /// one entry per allocation ever made; a commit then logs exactly the live nodes.
    #[test]
    fn allocating_and_freeing_without_commits_keeps_the_dirty_list_bounded() {
        let mut c = super::super::recovery::new_memory_core(&StoreOptions::default()).unwrap();
        let mut ring: Vec<NodeId> = (0..1000).map(|_| c.allocate(64, 1).unwrap().0).collect();
        for i in 0..200_000 {
            c.free(ring[i % ring.len()]).unwrap();
            ring[i % 1000] = c.allocate(64, 1).unwrap().0;
        }
        assert_eq!(c.dirty.len(), 1000, "each handle in use listed once");
        let prepared = c.prepare_commit(usize::MAX, usize::MAX, Vec::new());
        c.apply_commit(prepared.epoch, false);
        assert_eq!(c.live_nodes, 1000);
        c.verify().unwrap();
    }
}
