//! A handle table whose lookups take no lock: for the handles a host calls through once per
//! entry of a scan (cursors), where the registry's shared lock, and a mutex around the
//! object, cost more than the cursor's own step.
//!
//! Tokens are the registry's (type << 56 | generation << 32 | index + 1), with the same
//! promises: a closed, stale, garbage, foreign or inherited (after `fork`) token is refused,
//! never dereferenced, and a closed token never becomes valid again (generations only grow; a
//! slot at its last generation is retired when it closes).
//!
//! Each slot has one atomic state word: its generation, whether it holds a live object, and
//! whether a call is using that object. A call takes the slot with one compare-and-swap from
//! "live, idle, this generation" to "live, in use", and gives it back with one store. The
//! object is used by one call at a time, so it needs no lock of its own: a second thread that
//! calls through the same handle meanwhile gets `Busy` (two threads must not use one cursor
//! at once; they get a status, not a crash). A close takes the slot the same way, so it
//! never drops an object a call is using (it answers `Busy` instead, and changes nothing).
//!
//! Slots live in chunks that are never freed (chunk c holds `FIRST_CHUNK << c` slots), so a
//! slot's address stays valid for any token, however stale: a lookup needs no lock to reach it.

use super::fork::{self, ForkLock};
use crate::error::{Error, Result};
use std::any::Any;
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) use super::registry::HandleType;
use super::registry::{closed_message, inherited_message, not_ours, GENERATION_MAX};

/// The state word's flags; the generation sits above them.
const LIVE: u64 = 1;
const BUSY: u64 = 2;
const FLAG_BITS: u32 = 2;

/// Slots of the first chunk; each next chunk doubles.
const FIRST_CHUNK: usize = 64;
const FIRST_CHUNK_BITS: u32 = FIRST_CHUNK.trailing_zeros();
/// Enough chunks for every index a token can carry (32 bits).
const CHUNKS: usize = 33 - FIRST_CHUNK_BITS as usize;
/// At most this many slots, live and retired (as the registry's).
const SLOTS_MAX: usize = u32::MAX as usize - 1;

struct Slot<T> {
    /// generation << FLAG_BITS | BUSY | LIVE. Generation 0: never handed out.
    state: AtomicU64,
    /// The process that opened the handle (`fork::this_process`).
    process: AtomicU64,
    /// Touched only by whoever holds the slot: a call that set BUSY, a close that set BUSY,
    /// or an open, under the free list's lock, of a slot that is not LIVE.
    value: UnsafeCell<Option<T>>,
}

impl<T> Slot<T> {
    const fn empty() -> Slot<T> {
        Slot { state: AtomicU64::new(0), process: AtomicU64::new(0), value: UnsafeCell::new(None) }
    }
}

struct Free {
    /// Closed slots below their last generation, reused last-freed first.
    list: Vec<u32>,
    /// Slots handed out so far (the next new slot's index).
    used: usize,
}

pub(crate) struct Slots<T> {
    ty: HandleType,
    chunks: [AtomicPtr<Slot<T>>; CHUNKS],
    /// Opens and closes take this lock (std's, for the reason given on `Registry`); it is held
    /// across `fork`.
    free: Mutex<Free>,
    /// The generation a new slot's first handle gets, minus one (tests start near the end).
    first_generation: u32,
    fork_hooked: AtomicBool,
}

// SAFETY: a slot's value is reached only by the one party holding the slot (see `Slot`), so
// the table hands each object to one thread at a time, as a `Mutex<T>` does: `T: Send` is
// enough. The chunks' pointers are published with Release and read with Acquire.
unsafe impl<T: Send> Sync for Slots<T> {}

/// The slot a call holds: the object, given back (BUSY cleared) on drop, also when the call
/// panics.
pub(crate) struct Held<'s, T> {
    slot: &'s Slot<T>,
    state: u64,
}

impl<T> Drop for Held<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.slot.state.store(self.state, Ordering::Release);
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        // SAFETY: this call holds the slot (BUSY is set), so nothing else touches the value;
        // a LIVE slot always holds one.
        unsafe { (*self.slot.value.get()).as_ref().unwrap_unchecked() }
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`; `&mut self` makes this the only reference.
        unsafe { (*self.slot.value.get()).as_mut().unwrap_unchecked() }
    }
}

impl<T: Send + 'static> Slots<T> {
    pub(crate) const fn new(ty: HandleType) -> Slots<T> {
        Slots {
            ty,
            chunks: [const { AtomicPtr::new(std::ptr::null_mut()) }; CHUNKS],
            free: Mutex::new(Free { list: Vec::new(), used: 0 }),
            first_generation: 0,
            fork_hooked: AtomicBool::new(false),
        }
    }

    #[cfg(test)]
    fn starting_at(ty: HandleType, generation: u32) -> Slots<T> {
        Slots { first_generation: generation, ..Slots::new(ty) }
    }

    fn free(&self) -> MutexGuard<'_, Free> {
        // Nothing panics while the lock is held but a failed allocation; the list stays whole.
        self.free.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// (chunk, offset within it) of a slot index.
    #[inline]
    fn place(index: usize) -> (usize, usize) {
        let j = index + FIRST_CHUNK;
        let chunk = (usize::BITS - 1 - j.leading_zeros() - FIRST_CHUNK_BITS) as usize;
        (chunk, j - (FIRST_CHUNK << chunk))
    }

    /// The slot at `index`, if its chunk exists (it then stays for good).
    #[inline]
    fn slot(&self, index: usize) -> Option<&Slot<T>> {
        // The first chunk's slots, which a host with few open cursors uses, are found without
        // the chunk arithmetic: a scan's every step looks its cursor up.
        let (chunk, offset) = if index < FIRST_CHUNK { (0, index) } else { Self::place(index) };
        let base = self.chunks.get(chunk)?.load(Ordering::Acquire);
        if base.is_null() {
            return None;
        }
        // SAFETY: a non-null chunk pointer was published (Release) after its chunk of
        // `FIRST_CHUNK << chunk` slots was made, and chunks are never freed; `offset` is
        // below that count by `place`.
        Some(unsafe { &*base.add(offset) })
    }

    /// The slot at `index`, making its chunk first if needed (under the free list's lock).
    fn slot_made(&self, _free: &mut Free, index: usize) -> &Slot<T> {
        let (chunk, _) = Self::place(index);
        if self.chunks[chunk].load(Ordering::Acquire).is_null() {
            let slots: Box<[Slot<T>]> = (0..FIRST_CHUNK << chunk).map(|_| Slot::empty()).collect();
            self.chunks[chunk].store(Box::leak(slots).as_mut_ptr(), Ordering::Release);
        }
        self.slot(index).expect("chunk made above")
    }

    fn token(&self, index: usize, generation: u32) -> usize {
        debug_assert!((1..=GENERATION_MAX).contains(&generation));
        (self.ty as usize) << 56 | (generation as usize) << 32 | (index + 1)
    }

    #[inline]
    fn decode(&self, token: usize) -> Result<(usize, u64)> {
        if token >> 56 != self.ty as usize || token & 0xFFFF_FFFF == 0 {
            return Err(not_ours(token, self.ty));
        }
        Ok(((token & 0xFFFF_FFFF) - 1, (((token >> 32) & 0xFF_FFFF) as u64) << FLAG_BITS | LIVE))
    }

    /// Registers `value` and returns its token; `Limit` when the table is full.
    pub(crate) fn insert(&'static self, value: T) -> Result<usize> {
        if !self.fork_hooked.load(Ordering::Acquire) {
            fork::hook(self, &self.fork_hooked);
        }
        let process = fork::this_process();
        let mut free = self.free();
        let index = match free.list.pop() {
            Some(i) => i as usize,
            None if free.used < SLOTS_MAX => {
                let i = free.used;
                let generation = u64::from(self.first_generation) << FLAG_BITS;
                self.slot_made(&mut free, i).state.store(generation, Ordering::Relaxed);
                free.used += 1;
                i
            }
            None => return Err(Error::Limit(format!("{SLOTS_MAX} {:?} handles have been opened", self.ty))),
        };
        let slot = self.slot(index).expect("a handed-out slot's chunk exists");
        let old = slot.state.load(Ordering::Relaxed);
        debug_assert_eq!(old & (LIVE | BUSY), 0, "a free slot is neither live nor in use");
        let generation = (old >> FLAG_BITS) as u32 + 1;
        debug_assert!(generation <= GENERATION_MAX);
        // SAFETY: the slot is free (taken from the list, or new, under the lock) and not LIVE,
        // so no call or close can take it: this is the only access to the value.
        unsafe { *slot.value.get() = Some(value) };
        slot.process.store(process, Ordering::Relaxed);
        // Publishes the value and the process to the call that takes the slot (Acquire).
        slot.state.store(u64::from(generation) << FLAG_BITS | LIVE, Ordering::Release);
        Ok(self.token(index, generation))
    }

    /// Takes the slot `token` names for one call: its object, exclusively, until the returned
    /// `Held` drops. One compare-and-swap; the refusals are worked out apart, off this path.
    #[inline(always)]
    pub(crate) fn take(&self, token: usize) -> Result<Held<'_, T>> {
        let (index, live) = self.decode(token)?;
        let Some(slot) = self.slot(index) else { return Err(self.refusal(None, token)) };
        if slot.state.compare_exchange(live, live | BUSY, Ordering::Acquire, Ordering::Relaxed).is_err() {
            return Err(self.refusal(Some(slot), token));
        }
        let held = Held { slot, state: live };
        if slot.process.load(Ordering::Relaxed) != fork::this_process() {
            return Err(self.refusal(Some(slot), token)); // `held` gives the slot back
        }
        Ok(held)
    }

    /// Calls `f` with the handle's object, held for the call (see `take`).
    #[inline]
    pub(crate) fn with<R>(&self, token: usize, f: impl FnOnce(&mut T) -> Result<R>) -> Result<R> {
        let mut held = self.take(token)?;
        f(&mut held)
    }

    /// Unregisters a handle and returns its object. A handle in use by a call on another
    /// thread is refused with `Busy`, another process's with `BadHandle`; both stay as they
    /// were.
    pub(crate) fn remove(&self, token: usize) -> Result<T> {
        let mut free = self.free();
        let held = self.take(token)?;
        let (index, live) = self.decode(token)?;
        std::mem::forget(held);
        let slot = self.slot(index).expect("taken above");
        // SAFETY: this close holds the slot (BUSY set by `take`): nothing else touches it.
        let value = unsafe { (*slot.value.get()).take() }.expect("a live slot holds its object");
        let generation = live >> FLAG_BITS;
        // Not LIVE, not BUSY: every token of this generation is refused from now on.
        slot.state.store(generation << FLAG_BITS, Ordering::Release);
        if generation < u64::from(GENERATION_MAX) {
            free.list.push(index as u32);
        }
        Ok(value)
    }

    /// Why a well-formed token's slot could not be taken (or was taken in another process).
    #[cold]
    #[inline(never)]
    fn refusal(&self, slot: Option<&Slot<T>>, token: usize) -> Error {
        let generation = ((token >> 32) & 0xFF_FFFF) as u64;
        let Some(slot) = slot else { return Error::BadHandle(closed_message(token)) };
        let state = slot.state.load(Ordering::Acquire);
        if state >> FLAG_BITS != generation || state & LIVE == 0 {
            return Error::BadHandle(closed_message(token));
        }
        let process = slot.process.load(Ordering::Relaxed);
        if process != fork::this_process() {
            return Error::BadHandle(inherited_message(token, self.ty, process));
        }
        Error::Busy(format!(
            "{:?} handle {token:#x} is in use by a call on another thread: one handle must not be \
             used by two threads at once",
            self.ty
        ))
    }
}

impl<T: Send + 'static> ForkLock for Slots<T> {
    fn lock_for_fork(&'static self) -> Box<dyn Any> {
        Box::new(self.free())
    }
}

#[cfg(test)]
mod tests;
