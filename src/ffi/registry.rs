//! C handles are tokens, not pointers: an index and a generation into a global table, with
//! a type tag. A closed, garbage or foreign handle is recognized and refused; it is never
//! dereferenced, so a host's use-after-close is an error code, not a crash.

use crate::error::{Error, Result};
use parking_lot::RwLock;

/// What kind of object a handle names; part of every token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum HandleType {
    Store = 0x5C,
    Tree = 0x5D,
    Cursor = 0x5E,
}

struct Entry<T> {
    generation: u32,
    value: Option<T>,
}

pub(crate) struct Registry<T> {
    ty: HandleType,
    entries: RwLock<Vec<Entry<T>>>,
}

impl<T: Clone> Registry<T> {
    pub(crate) const fn new(ty: HandleType) -> Registry<T> {
        Registry { ty, entries: RwLock::new(Vec::new()) }
    }

    /// token = type << 56 | generation << 32 | (index + 1): never 0, never a valid address
    /// in user space, so it cannot be mistaken for or used as a pointer.
    fn token(&self, index: usize, generation: u32) -> usize {
        (self.ty as usize) << 56 | ((generation as usize) & 0xFF_FFFF) << 32 | (index + 1)
    }

    pub(crate) fn insert(&self, value: T) -> usize {
        let mut entries = self.entries.write();
        let index = match entries.iter().position(|e| e.value.is_none()) {
            Some(i) => i,
            None => {
                entries.push(Entry { generation: 0, value: None });
                entries.len() - 1
            }
        };
        let e = &mut entries[index];
        e.generation = e.generation.wrapping_add(1) & 0xFF_FFFF;
        e.value = Some(value);
        self.token(index, e.generation)
    }

    fn decode(&self, token: usize) -> Result<(usize, u32)> {
        let bad = || Error::BadHandle(format!("{token:#x} is not an open {:?} handle", self.ty));
        if token >> 56 != self.ty as usize || token & 0xFFFF_FFFF == 0 {
            return Err(bad());
        }
        Ok(((token & 0xFFFF_FFFF) - 1, ((token >> 32) & 0xFF_FFFF) as u32))
    }

    pub(crate) fn get(&self, token: usize) -> Result<T> {
        let (index, generation) = self.decode(token)?;
        let entries = self.entries.read();
        match entries.get(index) {
            Some(Entry { generation: g, value: Some(v) }) if *g == generation => Ok(v.clone()),
            _ => Err(closed(token)),
        }
    }

    /// Calls `f` with the handle's object, borrowed under the table's shared lock (taken
    /// recursively, so a waiting open or close cannot wedge a nested call): no reference count
    /// is touched, which `get` costs. For short calls; a long one would hold up opens and
    /// closes of every handle of this type.
    pub(crate) fn with<R>(&self, token: usize, f: impl FnOnce(&T) -> Result<R>) -> Result<R> {
        let (index, generation) = self.decode(token)?;
        let entries = self.entries.read_recursive();
        match entries.get(index) {
            Some(Entry { generation: g, value: Some(v) }) if *g == generation => f(v),
            _ => Err(closed(token)),
        }
    }

    pub(crate) fn remove(&self, token: usize) -> Result<T> {
        let (index, generation) = self.decode(token)?;
        let mut entries = self.entries.write();
        match entries.get_mut(index) {
            Some(Entry { generation: g, value }) if *g == generation => value.take().ok_or_else(|| closed(token)),
            _ => Err(closed(token)),
        }
    }
}

fn closed(token: usize) -> Error {
    Error::BadHandle(format!("{token:#x} is closed or was never opened"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_garbage_and_removed_tokens_are_refused() {
        let r: Registry<u32> = Registry::new(HandleType::Store);
        let a = r.insert(7);
        assert_eq!(r.get(a).unwrap(), 7);
        assert_eq!(r.with(a, |v| Ok(*v + 1)).unwrap(), 8);
        assert_eq!(r.remove(a).unwrap(), 7);
        assert!(r.with(a, |v| Ok(*v)).is_err());
        assert!(r.get(a).is_err());
        assert!(r.remove(a).is_err());
        let b = r.insert(8);
        assert_ne!(a, b, "a reused slot gets a new generation");
        assert!(r.get(a).is_err());
        assert!(r.get(0).is_err());
        assert!(r.get(0xdead_beef).is_err());
        assert!(r.get(b + 1).is_err());
    }
}
