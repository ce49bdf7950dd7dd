//! A list of node handles that holds each handle at most once, with a bit per handle saying
//! which are listed: adding one already there costs a bit test, and the list never grows past
//! the handles in use, however often the same handles come back (a host that allocates and
//! frees without committing gets the handle it just freed back at once).

/// Handles in the order they were first added since the last `clear`.
#[derive(Default)]
pub(crate) struct HandleList {
    list: Vec<u64>,
    /// Bit `h % 64` of word `h / 64` set: `h` is in `list`.
    bits: Vec<u64>,
}

impl HandleList {
    /// Adds `h` unless it is listed already.
    #[inline]
    pub(crate) fn insert(&mut self, h: u64) {
        let (word, bit) = ((h / 64) as usize, 1u64 << (h % 64));
        if word >= self.bits.len() {
            self.grow(word);
        }
        if self.bits[word] & bit == 0 {
            self.bits[word] |= bit;
            self.list.push(h);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, word: usize) {
        self.bits.resize(word + 1, 0);
    }

    /// Empties the list, keeping its allocations for the next one.
    pub(crate) fn clear(&mut self) {
        for &h in &self.list {
            self.bits[(h / 64) as usize] = 0;
        }
        self.list.clear();
    }

    /// Orders the handles (the bits do not change: the same handles stay listed).
    pub(crate) fn sort(&mut self) {
        self.list.sort_unstable();
    }
}

impl std::ops::Deref for HandleList {
    type Target = [u64];
    fn deref(&self) -> &[u64] {
        &self.list
    }
}

impl<'a> IntoIterator for &'a HandleList {
    type Item = &'a u64;
    type IntoIter = std::slice::Iter<'a, u64>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_handle_is_listed_once_until_cleared() {
        let mut l = HandleList::default();
        for h in [5, 300, 5, 64, 300, 5, 0] {
            l.insert(h);
        }
        assert_eq!(&*l, &[5, 300, 64, 0]);
        l.sort();
        assert_eq!(&*l, &[0, 5, 64, 300]);
        l.insert(64);
        assert_eq!(l.len(), 4, "sorting keeps the membership");
        l.clear();
        assert!(l.is_empty());
        l.insert(300);
        l.insert(5);
        l.insert(300);
        assert_eq!(&*l, &[300, 5], "listed again after the clear, once");
    }
}
