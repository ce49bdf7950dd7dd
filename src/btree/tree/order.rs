//! Key order: bytewise or the host's comparator, probes, separators and Multi composites.

use super::*;

/// Bytewise order, shorter first on a common prefix (`<[u8]>::cmp`). Keys that differ in
/// their first eight bytes (most, in a search; separators are often shorter) are told apart
/// by one integer comparison instead of a call to memcmp. Zero-padding a short key keeps the
/// order: where the padded prefixes differ, the first difference is a real byte, or a pad
/// below a real non-zero byte of a longer key, which the slice order also puts first.
#[inline]
pub(crate) fn bytewise(a: &[u8], b: &[u8]) -> Ordering {
    let (x, y) = (prefix_word(a), prefix_word(b));
    if x != y {
        return x.cmp(&y);
    }
    a.cmp(b)
}

/// A stored key searched for. In a bytewise tree (no comparator, not Multi) its first eight
/// bytes are read once, and most probes are told apart from a page's keys by one integer
/// comparison; other trees compare through [`BTree::cmp_stored`].
pub(crate) struct Probe<'k> {
    key: &'k [u8],
    word: u64,
    /// The tree whose order to use; `None` for bytewise order.
    tree: Option<&'k BTree>,
}

impl Probe<'_> {
    /// Where the probe is in a page (`Ok(i)`: entry i's key equals it; `Err(i)`: it would go
    /// at i). A bytewise probe reads each key's word from its cell without slicing the key.
    #[inline(always)]
    pub(crate) fn find_in(&self, page: &PageRef<'_>) -> Result<std::result::Result<usize, usize>> {
        match self.tree {
            None => page.search_bytewise(self.word, self.key),
            Some(tree) => page.search(|k| tree.cmp_stored(k, self.key)),
        }
    }

    /// Whether a bytewise probe's word lies outside `[low, high]`: the probe is then below a
    /// key whose word is `low` or above one whose word is `high`. Always false for other
    /// orders, which words do not decide.
    #[inline(always)]
    pub(crate) fn word_outside(&self, (low, high): (u64, u64)) -> bool {
        self.tree.is_none() && (self.word < low || self.word > high)
    }

    /// How entry i of a leaf compares with the probe.
    #[inline(always)]
    pub(crate) fn cmp_entry(&self, page: &PageRef<'_>, i: usize) -> Result<Ordering> {
        match self.tree {
            None => page.cmp_bytewise(i, self.word, self.key),
            Some(tree) => Ok(tree.cmp_stored(page.key(i)?, self.key)),
        }
    }

    /// The child of an internal page the probe belongs to, as [`PageRef::child_for`].
    #[inline(always)]
    pub(crate) fn child_in(&self, page: &PageRef<'_>) -> Result<(Option<usize>, u64)> {
        match self.tree {
            None => page.child_for_bytewise(self.word, self.key),
            Some(tree) => page.child_for(|k| tree.cmp_stored(k, self.key)),
        }
    }
}

impl BTree {
    /// Compares two user keys in the tree's order.
    pub(crate) fn cmp_keys(&self, a: &[u8], b: &[u8]) -> Ordering {
        match &self.inner.custom_order {
            Some(c) => c(a, b),
            None => bytewise(a, b),
        }
    }

    /// A stored key to search for, with what makes comparing against it cheap.
    #[inline]
    pub(crate) fn probe<'k>(&'k self, skey: &'k [u8]) -> Probe<'k> {
        let bytewise = self.inner.custom_order.is_none() && self.inner.duplicates != Duplicates::Multi;
        Probe { key: skey, word: prefix_word(skey), tree: (!bytewise).then_some(self) }
    }

    /// Compares two stored keys (in Multi mode, key-then-value composites).
    pub(crate) fn cmp_stored(&self, a: &[u8], b: &[u8]) -> Ordering {
        if self.inner.duplicates != Duplicates::Multi {
            return self.cmp_keys(a, b);
        }
        let (ka, va) = split_composite(a);
        let (kb, vb) = split_composite(b);
        self.cmp_keys(ka, kb).then_with(|| va.cmp(vb))
    }

    /// The stored key of a user (key, value): the key itself, or in Multi mode the composite.
    pub(crate) fn stored_key<'k>(&self, key: &'k [u8], value: &[u8]) -> Cow<'k, [u8]> {
        match self.inner.duplicates {
            Duplicates::Multi => Cow::Owned(composite(key, value)),
            _ => Cow::Borrowed(key),
        }
    }

    /// The separator between two adjacent stored keys: shortened when the order is bytewise.
    pub(super) fn separator(&self, left: &[u8], right: &[u8]) -> Vec<u8> {
        if self.inner.custom_order.is_none() && self.inner.duplicates != Duplicates::Multi {
            shortest_separator(left, right).to_vec()
        } else {
            right.to_vec()
        }
    }
}

/// Multi mode's stored key: u16 key length, key, value. Ordered by key, then value.
pub(super) fn composite(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut c = Vec::with_capacity(2 + key.len() + value.len());
    c.extend_from_slice(&(key.len() as u16).to_le_bytes());
    c.extend_from_slice(key);
    c.extend_from_slice(value);
    c
}

/// Splits a composite back into (key, value); a malformed one reads as all key.
pub(crate) fn split_composite(c: &[u8]) -> (&[u8], &[u8]) {
    if c.len() < 2 {
        return (c, &[]);
    }
    let n = u16::from_le_bytes([c[0], c[1]]) as usize;
    if 2 + n > c.len() {
        return (c, &[]);
    }
    (&c[2..2 + n], &c[2 + n..])
}
