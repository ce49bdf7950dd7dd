//! C handles are tokens, not pointers: an index and a generation into a global table, with
//! a type tag. A closed, garbage, foreign or inherited (after `fork`) handle is recognized and
//! refused; it is never dereferenced, so a host's use-after-close is an error code, not a
//! crash.
//!
//! A closed token never becomes valid again: each slot's generation only grows, and a slot
//! whose generation is used up is retired for good (see [`GENERATION_MAX`]), so no number of
//! opens and closes makes an old token name a newer handle.

use super::fork::{self, ForkLock};
use crate::error::{Error, Result};
use std::any::Any;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// What kind of object a handle names; part of every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum HandleType {
    Store = 0x5C,
    Tree = 0x5D,
    Cursor = 0x5E,
    Snapshot = 0x5F,
}

/// The token's generation field is 24 bits. A slot handed out at this generation is retired
/// when that handle closes: reusing it would need generation 0 again and revive every token
/// ever issued from it. Retiring costs one table entry per 2^24 opens of a slot.
pub(crate) const GENERATION_MAX: u32 = 0xFF_FFFF;

/// `index + 1` fills the token's low 32 bits (0 there marks garbage): at most this many slots,
/// live and retired. At one retired slot per 2^24 opens this is 2^56 opens, centuries of a
/// host that does nothing else.
const SLOTS_MAX: usize = u32::MAX as usize - 1;

// The token layout needs 64-bit pointers (type << 56).
const _: () = assert!(usize::BITS == 64);

struct Entry<T> {
    /// The generation of the slot's latest handle (0: never handed out).
    generation: u32,
    /// The process that opened the handle (`fork::this_process`); another process's is refused.
    process: u64,
    value: Option<T>,
}

struct Table<T> {
    entries: Vec<Entry<T>>,
    /// Free slots, reused last-freed first (so a host that opens and closes in a loop walks
    /// one slot through its generations, keeping the table small).
    free: Vec<u32>,
}

/// The table's lock is std's, not parking_lot's: it is held across `fork`, and parking_lot's
/// unlock may hand the lock to the threads parked on it (its eventual fairness), which a child
/// does not have, leaving the child's table locked for good. std's unlock only wakes waiters.
/// It also lets no new reader in while a writer waits, so opens, closes and forks are never
/// The refusal of a token that is not a handle of this table's type at all (garbage, or a
/// handle of another type), for both handle tables.
#[cold]
#[inline(never)]
pub(super) fn not_ours(token: usize, ty: HandleType) -> Error {
    Error::BadHandle(format!("{token:#x} is not an open {ty:?} handle"))
}

/// starved by a stream of lookups.
pub(crate) struct Registry<T> {
    ty: HandleType,
    table: RwLock<Table<T>>,
    /// The generation a new slot's first handle gets, minus one (tests start near the end).
    first_generation: u32,
    /// Set once this registry is known to the fork hooks (at its first insert).
    fork_hooked: AtomicBool,
    /// How many handles have been removed (closed): a per-thread `HandleCache` entry made
    /// before the latest removal is no longer trusted.
    removals: AtomicU64,
}

impl<T: Clone + Send + Sync + 'static> Registry<T> {
    pub(crate) const fn new(ty: HandleType) -> Registry<T> {
        Registry {
            ty,
            table: RwLock::new(Table { entries: Vec::new(), free: Vec::new() }),
            first_generation: 0,
            fork_hooked: AtomicBool::new(false),
            removals: AtomicU64::new(0),
        }
    }

    /// A registry whose new slots start at `generation`, to reach the generation limit in a
    /// test without 2^24 opens.
    #[cfg(test)]
    fn starting_at(ty: HandleType, generation: u32) -> Registry<T> {
        Registry { first_generation: generation, ..Registry::new(ty) }
    }

    // A panic inside `with`'s closure poisons the lock but leaves the table whole (the closure
    // gets the object, not the table), so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Table<T>> {
        self.table.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table<T>> {
        self.table.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// token = type << 56 | generation << 32 | (index + 1): never 0, never a valid address
    /// in user space, so it cannot be mistaken for or used as a pointer.
    fn token(&self, index: usize, generation: u32) -> usize {
        debug_assert!((1..=GENERATION_MAX).contains(&generation));
        (self.ty as usize) << 56 | (generation as usize) << 32 | (index + 1)
    }

    /// Registers `value` and returns its token; `Limit` when the table is full.
    pub(crate) fn insert(&'static self, value: T) -> Result<usize> {
        // Before the table's lock: the fork hooks take the registries' locks themselves.
        if !self.fork_hooked.load(Ordering::Acquire) {
            fork::hook(self, &self.fork_hooked);
        }
        let process = fork::this_process();
        let mut table = self.write();
        let index = match table.free.pop() {
            Some(i) => i as usize,
            None if table.entries.len() < SLOTS_MAX => {
                table.entries.push(Entry { generation: self.first_generation, process, value: None });
                table.entries.len() - 1
            }
            None => return Err(Error::Limit(format!("{SLOTS_MAX} {:?} handles have been opened", self.ty))),
        };
        let e = &mut table.entries[index];
        debug_assert!(e.value.is_none() && e.generation < GENERATION_MAX);
        e.generation += 1;
        e.process = process;
        e.value = Some(value);
        Ok(self.token(index, e.generation))
    }

    #[inline]
    fn decode(&self, token: usize) -> Result<(usize, u32)> {
        if token >> 56 != self.ty as usize || token & 0xFFFF_FFFF == 0 {
            return Err(not_ours(token, self.ty));
        }
        Ok(((token & 0xFFFF_FFFF) - 1, ((token >> 32) & 0xFF_FFFF) as u32))
    }

    /// The live entry a token names. Every call through a handle comes here: the refusals are
    /// worked out apart, off this path.
    #[inline]
    fn live<'t>(&self, entries: &'t [Entry<T>], token: usize) -> Result<&'t T> {
        let (index, generation) = self.decode(token)?;
        match entries.get(index) {
            Some(Entry { generation: g, process, value: Some(v) })
                if *g == generation && *process == fork::this_process() =>
            {
                Ok(v)
            }
            _ => Err(self.refusal(entries.get(index), generation, token)),
        }
    }

    /// Why a well-formed token names no live entry of this process.
    #[cold]
    #[inline(never)]
    fn refusal(&self, entry: Option<&Entry<T>>, generation: u32, token: usize) -> Error {
        match entry {
            Some(Entry { generation: g, process, value: Some(_) }) if *g == generation => {
                inherited(token, self.ty, *process)
            }
            _ => closed(token),
        }
    }

    pub(crate) fn get(&self, token: usize) -> Result<T> {
        let table = self.read();
        self.live(&table.entries, token).cloned()
    }

    /// Calls `f` with the handle's object, borrowed under the table's shared lock: no
    /// reference count is touched, which `get` costs. For short calls; a long one would hold
    /// up opens and closes of every handle of this type. `f` must not look a handle up again
    /// (a writer waiting meanwhile would wedge it): no pcore call runs inside another, as the
    /// only host code pcore calls, a comparator, must not call pcore.
    pub(crate) fn with<R>(&self, token: usize, f: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let table = self.read();
        f(self.live(&table.entries, token)?)
    }

    /// How many handles were removed so far; read before a lookup whose result is cached, so a
    /// removal after it makes the cached entry stale.
    #[inline]
    pub(crate) fn removals(&self) -> u64 {
        self.removals.load(Ordering::Acquire)
    }

    /// Unregisters a handle and returns its object. Another process's handle is refused and
    /// stays as it was: its object is never dropped here (dropping a store checkpoints it).
    pub(crate) fn remove(&self, token: usize) -> Result<T> {
        let mut table = self.write();
        self.live(&table.entries, token)?;
        let index = self.decode(token)?.0;
        let e = &mut table.entries[index];
        let Some(value) = e.value.take() else { return Err(closed(token)) };
        if e.generation < GENERATION_MAX {
            table.free.push(index as u32);
        }
        self.removals.fetch_add(1, Ordering::Release);
        Ok(value)
    }
}

impl<T: Clone + Send + Sync + 'static> ForkLock for Registry<T> {
    fn lock_for_fork(&'static self) -> Box<dyn Any> {
        Box::new(self.write())
    }
}

fn closed(token: usize) -> Error {
    Error::BadHandle(closed_message(token))
}

pub(crate) fn closed_message(token: usize) -> String {
    format!("{token:#x} is closed or was never opened")
}

fn inherited(token: usize, ty: HandleType, process: u64) -> Error {
    Error::BadHandle(inherited_message(token, ty, process))
}

pub(crate) fn inherited_message(token: usize, ty: HandleType, process: u64) -> String {
    format!(
        "{ty:?} handle {token:#x} belongs to process {} and was inherited through fork(): a handle \
         must not be used after fork (as with LMDB); this process may open the store anew",
        fork::pid_of(process)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked<T: Clone + Send + Sync + 'static>(r: Registry<T>) -> &'static Registry<T> {
        Box::leak(Box::new(r))
    }

    #[test]
    fn stale_garbage_and_removed_tokens_are_refused() {
        let r: &Registry<u32> = leaked(Registry::new(HandleType::Store));
        let a = r.insert(7).unwrap();
        assert_eq!(r.get(a).unwrap(), 7);
        assert_eq!(r.with(a, |v| Ok(*v + 1)).unwrap(), 8);
        assert_eq!(r.remove(a).unwrap(), 7);
        assert!(r.with(a, |v| Ok(*v)).is_err());
        assert!(r.get(a).is_err());
        assert!(r.remove(a).is_err());
        let b = r.insert(8).unwrap();
        assert_ne!(a, b, "a reused slot gets a new generation");
        assert!(r.get(a).is_err());
        assert!(r.get(0).is_err());
        assert!(r.get(0xdead_beef).is_err());
        assert!(r.get(b + 1).is_err());
    }

    #[test]
    fn a_slot_at_its_last_generation_is_retired_and_old_tokens_never_revive() {
        let r: &Registry<u32> = leaked(Registry::starting_at(HandleType::Cursor, GENERATION_MAX - 3));
        // One slot, reused: generations MAX-2, MAX-1, MAX.
        let mut old = Vec::new();
        for v in 0..3 {
            let t = r.insert(v).unwrap();
            assert_eq!(t & 0xFFFF_FFFF, 1, "the freed slot is reused");
            assert_eq!(r.remove(t).unwrap(), v);
            old.push(t);
        }
        assert_eq!((old[2] >> 32) & 0xFF_FFFF, GENERATION_MAX as usize);
        // The slot is used up: a new handle takes a fresh slot, never the old one again.
        let mut live = Vec::new();
        for v in 10..1000 {
            live.push(r.insert(v).unwrap());
        }
        for t in &live {
            assert_ne!(t & 0xFFFF_FFFF, 1, "the retired slot was handed out again");
            assert!(!old.contains(t), "a new token equals a closed one");
        }
        for t in &old {
            assert!(r.get(*t).is_err(), "closed token {t:#x} was accepted again");
            assert!(r.with(*t, |_| Ok(())).is_err());
            assert!(r.remove(*t).is_err());
        }
        for (v, t) in (10..).zip(&live) {
            assert_eq!(r.get(*t).unwrap(), v);
        }
    }

    #[test]
    fn generations_never_wrap_however_many_handles_come_and_go() {
        // Every slot starts two generations short of the limit, so every third handle of a slot
        // retires it; a slot's tokens must all differ, and each closed token stays refused.
        let r: &Registry<u64> = leaked(Registry::starting_at(HandleType::Tree, GENERATION_MAX - 2));
        let mut closed = std::collections::HashSet::new();
        let mut open = Vec::new();
        for round in 0..2000u64 {
            open.push((r.insert(round).unwrap(), round));
            if round % 3 != 0 {
                let (t, v) = open.swap_remove((round as usize * 7) % open.len());
                assert_eq!(r.remove(t).unwrap(), v);
                assert!(closed.insert(t), "token {t:#x} was handed out twice");
            }
        }
        for t in &closed {
            assert!(r.get(*t).is_err());
        }
        for (t, v) in &open {
            assert!(!closed.contains(t));
            assert_eq!(r.get(*t).unwrap(), *v);
        }
    }

    #[test]
    fn another_process_handle_is_refused_and_kept() {
        let r: &Registry<u32> = leaked(Registry::new(HandleType::Store));
        let t = r.insert(5).unwrap();
        // As after fork(): the entry was made by a process that is not this one.
        let pretend_parent = fork::this_process() ^ (1 << 40);
        r.write().entries[0].process = pretend_parent;
        for e in [r.get(t).unwrap_err(), r.with(t, |_| Ok(())).unwrap_err(), r.remove(t).unwrap_err()] {
            assert!(matches!(e, Error::BadHandle(_)), "{e}");
            assert!(e.to_string().contains("fork"), "{e}");
        }
        assert_eq!(r.read().entries[0].value, Some(5), "a refused close dropped the object");
        let u = r.insert(6).unwrap();
        assert_eq!(r.get(u).unwrap(), 6, "this process's own handles work");
        assert_ne!(t & 0xFFFF_FFFF, u & 0xFFFF_FFFF, "the inherited slot is not reused");
    }
}
