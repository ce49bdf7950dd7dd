//! Each thread remembers the few handles it used last, each with a strong reference to its
//! object: a call through a remembered handle finds its object with two loads and no atomic
//! read-modify-write. The registry's lock and the `Arc` clone of a lookup cost four of those
//! per call, more than the rest of an allocate or a free.
//!
//! Every guarantee of the registry holds: an entry is trusted only while no handle of its
//! registry has been removed since it was made (`Registry::removals`) and only in the process
//! that made it (fork), so a closed, stale or inherited handle always reaches the registry and
//! is refused there. A remembered object that was closed meanwhile is only kept alive, not
//! used, until the thread's next miss drops it (a closed store has released its memory and
//! files already: see `Store::close`).

use super::fork;
use super::registry::Registry;
use crate::error::Result;

/// Handles remembered per thread: a host writes to a few stores from one thread (XTree opens
/// one store per index), rarely more.
const ENTRIES: usize = 4;

struct Entry<T> {
    token: usize,
    /// `Registry::removals` when the entry was made.
    removals: u64,
    /// `fork::this_process` when the entry was made.
    process: u64,
    value: T,
}

pub(crate) struct HandleCache<T> {
    entries: [Option<Entry<T>>; ENTRIES],
    /// The entry replaced next when all are in use.
    next: usize,
}

impl<T: Clone + Send + Sync + 'static> HandleCache<T> {
    pub(crate) const fn new() -> HandleCache<T> {
        HandleCache { entries: [const { None }; ENTRIES], next: 0 }
    }

    /// Calls `f` with the object `token` names in `registry`, remembered or looked up (and
    /// remembered); the registry's refusal when it names none.
    #[inline]
    pub(crate) fn with<R>(
        &mut self,
        registry: &'static Registry<T>,
        token: usize,
        f: impl FnOnce(&T) -> Result<R>,
    ) -> Result<R> {
        // Read before the lookup below: a removal after this read makes the entry stale.
        let removals = registry.removals();
        let process = fork::this_process();
        let hit =
            self.entries.iter().flatten().find(|e| e.token == token && e.removals == removals && e.process == process);
        match hit {
            Some(e) => f(&e.value),
            None => self.miss(registry, token, removals, process, f),
        }
    }

    #[cold]
    fn miss<R>(
        &mut self,
        registry: &'static Registry<T>,
        token: usize,
        removals: u64,
        process: u64,
        f: impl FnOnce(&T) -> Result<R>,
    ) -> Result<R> {
        let value = registry.get(token)?;
        // Entries made before a removal go now: a closed object is not kept to the thread's end.
        for slot in &mut self.entries {
            if slot.as_ref().is_some_and(|e| e.removals != removals || e.process != process || e.token == token) {
                *slot = None;
            }
        }
        let index = self.entries.iter().position(Option::is_none).unwrap_or_else(|| {
            let i = self.next;
            self.next = (i + 1) % ENTRIES;
            i
        });
        let entry = self.entries[index].insert(Entry { token, removals, process, value });
        f(&entry.value)
    }

    /// Drops the entry of `token`, if any (its handle is being closed by this thread).
    pub(crate) fn forget(&mut self, token: usize) {
        for slot in &mut self.entries {
            if slot.as_ref().is_some_and(|e| e.token == token) {
                *slot = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::ffi::registry::HandleType;

    fn leaked(r: Registry<u32>) -> &'static Registry<u32> {
        Box::leak(Box::new(r))
    }

    #[test]
    fn a_removed_handle_is_refused_though_this_thread_remembers_it() {
        let r = leaked(Registry::new(HandleType::Store));
        let mut cache = HandleCache::new();
        let a = r.insert(7).unwrap();
        assert_eq!(cache.with(r, a, |v| Ok(*v)).unwrap(), 7);
        assert_eq!(cache.with(r, a, |v| Ok(*v)).unwrap(), 7, "remembered");
        r.remove(a).unwrap();
        assert!(matches!(cache.with(r, a, |v| Ok(*v)), Err(Error::BadHandle(_))));
        let b = r.insert(8).unwrap();
        assert_ne!(a, b);
        assert!(matches!(cache.with(r, a, |v| Ok(*v)), Err(Error::BadHandle(_))), "stale after reuse");
        assert_eq!(cache.with(r, b, |v| Ok(*v)).unwrap(), 8);
    }

    #[test]
    fn more_handles_than_entries_are_all_found() {
        let r = leaked(Registry::new(HandleType::Tree));
        let mut cache = HandleCache::new();
        let tokens: Vec<usize> = (0..3 * ENTRIES as u32).map(|v| r.insert(v).unwrap()).collect();
        for round in 0..3 {
            for (v, &t) in tokens.iter().enumerate() {
                assert_eq!(cache.with(r, t, |x| Ok(*x)).unwrap(), v as u32, "round {round}");
            }
        }
        cache.forget(tokens[0]);
        assert_eq!(cache.with(r, tokens[0], |x| Ok(*x)).unwrap(), 0);
    }

    #[test]
    fn another_process_entry_is_not_trusted() {
        let r = leaked(Registry::new(HandleType::Cursor));
        let mut cache = HandleCache::new();
        let t = r.insert(5).unwrap();
        assert_eq!(cache.with(r, t, |v| Ok(*v)).unwrap(), 5);
        // As after fork(): the remembered entry was made by another process.
        for e in cache.entries.iter_mut().flatten() {
            e.process ^= 1 << 40;
        }
        assert_eq!(cache.with(r, t, |v| Ok(*v)).unwrap(), 5, "looked up again, not taken from the entry");
        assert!(cache.entries.iter().flatten().all(|e| e.process == fork::this_process()));
    }
}
