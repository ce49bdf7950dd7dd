//! Point lookups.

use super::*;

impl BTree {
    /// The value of `key` (Unique and Overwrite trees; in a Multi tree, the first value).
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.get_with(key, <[u8]>::to_vec)
    }

    /// Calls `f` with the value of `key`, as `get` finds it, without copying it first: an
    /// inline value is read where its page lies, under the tree's and the store's shared
    /// locks. Do not call the tree or its store from inside `f`.
    pub fn get_with<R>(&self, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        if self.inner.duplicates == Duplicates::Multi {
            return Ok(self.get_all(key)?.first().map(|v| f(v)));
        }
        self.check_key(key)?;
        let st = self.read_state()?;
        self.get_held(&st, key, f)
    }

    /// `get_with` (Unique and Overwrite trees) under a hold of the tree's state the caller
    /// already has.
    pub(super) fn get_held<R>(&self, st: &State, key: &[u8], f: impl FnOnce(&[u8]) -> R) -> Result<Option<R>> {
        let probe = self.probe(key);
        let mut f = Some(f);
        let found = self.with_pages(|pages| {
            let (_, p) = self.walk_to_leaf(pages, st, &probe, |_, _, _| {})?;
            let Ok(i) = probe.find_in(&p)? else { return Ok(None) };
            match p.leaf_value(i)? {
                Value::Inline(v) => Ok(Some(Ok(f.take().map(|f| f(v))))),
                Value::Overflow(id, len) => Ok(Some(Err((id, len)))),
            }
        })?;
        match found {
            None => Ok(None),
            Some(Ok(r)) => Ok(r),
            Some(Err((id, len))) => {
                let v = self.read_overflow(id, len)?;
                Ok(f.take().map(|f| f(&v)))
            }
        }
    }

    pub(crate) fn read_overflow(&self, id: u64, len: u32) -> Result<Vec<u8>> {
        // Only a value node the store does not have is damage: a store closed meanwhile (or
        // any other failure to read) is reported as itself.
        let v = self.store()?.read(NodeId::from_raw(id)).map_err(|e| match e {
            Error::NotFound(_) => Error::corrupt(format!("B+ tree value node {id:#x}"), 0, "missing"),
            other => other,
        })?;
        if v.len() != len as usize {
            return Err(Error::corrupt(
                format!("B+ tree value node {id:#x}"),
                0,
                format!("{} bytes, the leaf says {len}", v.len()),
            ));
        }
        Ok(v)
    }

    /// Every value of `key`, in value order (one at most unless the tree is Multi).
    pub fn get_all(&self, key: &[u8]) -> Result<Vec<Vec<u8>>> {
        if self.inner.duplicates != Duplicates::Multi {
            return Ok(self.get(key)?.into_iter().collect());
        }
        self.check_key(key)?;
        let mut out = Vec::new();
        // One hold of the tree's state for the whole walk: a writer cannot make it stale.
        self.scan_from(key, |k, v| {
            let same = self.cmp_keys(k, key) == Ordering::Equal;
            if same {
                out.push(v.to_vec());
            }
            same
        })?;
        Ok(out)
    }
}
