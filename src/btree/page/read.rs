//! Reading a page: every access checked against the layout, and the searches.

use super::*;

/// How a search compares a page's entry with its probe. A trait rather than a closure so
/// that the comparison is inlined into the search loop.
pub(super) trait KeyOrder {
    /// How entry i's key compares with the probe.
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering>;
}

/// Any order, given as `order(key)`: how a stored key compares with the probe.
pub(super) struct ByKey<F>(F);

impl<F: Fn(&[u8]) -> std::cmp::Ordering> KeyOrder for ByKey<F> {
    #[inline(always)]
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering> {
        Ok((self.0)(page.key(i)?))
    }
}

/// Bytewise order against `key`, whose [`prefix_word`] is `word`.
pub(super) struct Bytewise<'k> {
    word: u64,
    key: &'k [u8],
}

impl KeyOrder for Bytewise<'_> {
    #[inline(always)]
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering> {
        page.cmp_bytewise(i, self.word, self.key)
    }
}

/// Bytewise order against `key`, whose [`prefix_word`] is `word`, in an internal page: by the
/// words its slots record.
pub(super) struct SlotWords<'k> {
    word: u64,
    key: &'k [u8],
}

impl KeyOrder for SlotWords<'_> {
    #[inline(always)]
    fn at(&self, page: &PageRef<'_>, i: usize) -> Result<std::cmp::Ordering> {
        match page.recorded_word(i).map(|w| w.cmp(&self.word)) {
            Some(std::cmp::Ordering::Equal) | None => page.cmp_bytewise(i, self.word, self.key),
            Some(unequal) => Ok(unequal),
        }
    }
}

/// Reads a page, checking its layout as it goes: a damaged page is `Corrupt` naming the page,
/// never a panic or an out-of-bounds read.
#[derive(Clone, Copy)]
pub(crate) struct PageRef<'a> {
    bytes: &'a [u8],
    page_id: u64,
    /// A leaf's slot array (empty in an internal page): the entry count is its length, so an
    /// index below it needs no check.
    pub(super) slots: &'a [[u8; SLOT_BYTES]],
    /// An internal page's slot array (empty in a leaf).
    pub(super) word_slots: &'a [[u8; WORD_SLOT_BYTES]],
    cells_start: usize,
}

impl<'a> PageRef<'a> {
    #[inline(always)]
    pub fn parse(bytes: &'a [u8], page_id: u64) -> Result<PageRef<'a>> {
        let (Some(&ty), Some(count), Some(cells)) =
            (bytes.first(), bytes.get(2..4), bytes.get(4..8).and_then(<[u8]>::first_chunk::<4>))
        else {
            return Err(bad_page(page_id, format!("{} bytes, shorter than a page header", bytes.len())));
        };
        if ty != TYPE_LEAF && ty != TYPE_INTERNAL {
            return Err(bad_page(page_id, format!("unknown page type {ty}")));
        }
        let count = u16::from_le_bytes([count[0], count[1]]) as usize;
        let cells = u32::from_le_bytes(*cells) as usize;
        let slots_end = HEADER_BYTES + count * slot_bytes(ty);
        if slots_end > cells || cells > bytes.len() {
            return Err(bad_page(
                page_id,
                format!("{count} slots and cells from {cells} do not fit {} bytes", bytes.len()),
            ));
        }
        let array = &bytes[HEADER_BYTES..slots_end];
        let (slots, word_slots) = if ty == TYPE_LEAF {
            (array.as_chunks::<SLOT_BYTES>().0, &[][..])
        } else {
            (&[][..], array.as_chunks::<WORD_SLOT_BYTES>().0)
        };
        Ok(PageRef { bytes, page_id, slots, word_slots, cells_start: cells })
    }

    /// The whole page.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    pub fn is_leaf(&self) -> bool {
        self.bytes[0] == TYPE_LEAF
    }

    pub fn len(&self) -> usize {
        // One of the two is empty.
        self.slots.len() + self.word_slots.len()
    }

    /// Where the slot array ends (and the free gap begins).
    fn slots_end(&self) -> usize {
        HEADER_BYTES + self.slots.len() * SLOT_BYTES + self.word_slots.len() * WORD_SLOT_BYTES
    }

    /// The prefix word internal entry i's slot records (None in a leaf, or past the end).
    #[inline(always)]
    pub(crate) fn recorded_word(&self, i: usize) -> Option<u64> {
        self.word_slots.get(i).map(|s| u64::from_le_bytes([s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9]]))
    }

    /// Every internal entry's recorded prefix word is its separator's: `Corrupt` otherwise
    /// (searches trust the words; `verify` checks them).
    pub fn check_words(&self) -> Result<()> {
        for i in 0..self.word_slots.len() {
            if self.recorded_word(i) != Some(prefix_word(self.key(i)?)) {
                return Err(self.corrupt(i, "its slot's prefix word is not its separator's"));
            }
        }
        Ok(())
    }

    pub fn leftmost_child(&self) -> u64 {
        u64::from_le_bytes(self.bytes[8..16].try_into().expect("8 bytes"))
    }

    pub(crate) fn cells_start(&self) -> usize {
        self.cells_start
    }

    #[cold]
    #[inline(never)]
    pub(super) fn corrupt(&self, i: usize, what: &str) -> Error {
        Error::corrupt(
            format!("B+ tree page {:#x}", self.page_id),
            (HEADER_BYTES + i * slot_bytes(self.bytes[0])) as u64,
            format!("entry {i}: {what}"),
        )
    }

    #[inline(always)]
    pub(super) fn cell_offset(&self, i: usize) -> Result<usize> {
        let slot = match (self.slots.get(i), self.word_slots.get(i)) {
            (Some(s), _) => *s,
            (None, Some(s)) => [s[0], s[1]],
            (None, None) => return Err(self.missing_entry(i)),
        };
        let off = u16::from_le_bytes(slot) as usize;
        if off < self.cells_start() || off >= self.bytes.len() {
            return Err(self.corrupt(i, "cell offset outside the cell area"));
        }
        Ok(off)
    }

    #[cold]
    #[inline(never)]
    fn missing_entry(&self, i: usize) -> Error {
        self.corrupt(i.min(self.len()), &format!("no entry {i} in a page of {}", self.len()))
    }

    #[inline]
    fn varint(&self, i: usize, at: usize) -> Result<(usize, usize)> {
        // One byte covers every key under 128 bytes: the common case, decoded inline.
        if let Some(&b) = self.bytes.get(at) {
            if b < 0x80 {
                return Ok((b as usize, 1));
            }
        }
        let (v, n) =
            get_varint(&self.bytes[at.min(self.bytes.len())..]).ok_or_else(|| self.corrupt(i, "bad length"))?;
        let v = usize::try_from(v)
            .ok()
            .filter(|&v| v <= self.bytes.len() << 1 | 1)
            .ok_or_else(|| self.corrupt(i, "length beyond the page"))?;
        Ok((v, n))
    }

    #[inline]
    fn take(&self, i: usize, at: usize, n: usize) -> Result<&'a [u8]> {
        match self.bytes.get(at..).and_then(|rest| rest.get(..n)) {
            Some(b) => Ok(b),
            None => Err(self.corrupt(i, "cell runs past the page")),
        }
    }

    #[inline]
    fn take_array<const N: usize>(&self, i: usize, at: usize) -> Result<&'a [u8; N]> {
        match self.bytes.get(at..).and_then(<[u8]>::first_chunk::<N>) {
            Some(b) => Ok(b),
            None => Err(self.corrupt(i, "cell runs past the page")),
        }
    }

    #[inline(always)]
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        let off = self.cell_offset(i)?;
        // A key under 128 bytes (one length byte) is the common case: one bounds check.
        let cell = &self.bytes[off..];
        if let Some((&len, rest)) = cell.split_first() {
            if len < 0x80 {
                return rest.get(..len as usize).ok_or_else(|| self.corrupt(i, "cell runs past the page"));
            }
        }
        let (len, n) = self.varint(i, off)?;
        self.take(i, off + n, len)
    }

    /// Entry i, decoded: for tests (the tree reads cells, and keys, values or children by
    /// index).
    #[cfg(test)]
    pub fn entry(&self, i: usize) -> Result<Entry<'a>> {
        let off = self.cell_offset(i)?;
        let (key_len, n) = self.varint(i, off)?;
        let key = self.take(i, off + n, key_len)?;
        let at = off + n + key_len;
        let payload = if self.is_leaf() {
            let (header, n) = self.value_header(i, at)?;
            let (len, at) = (header >> 1, at + n);
            if header & 1 == 0 {
                let len = usize::try_from(len).map_err(|_| self.corrupt(i, "value length"))?;
                Payload::Leaf(Value::Inline(self.take(i, at, len)?))
            } else {
                let id = u64::from_le_bytes(*self.take_array::<8>(i, at)?);
                let len = u32::try_from(len).map_err(|_| self.corrupt(i, "overflow value length"))?;
                Payload::Leaf(Value::Overflow(id, len))
            }
        } else {
            Payload::Child(u64::from_le_bytes(*self.take_array::<8>(i, at)?))
        };
        Ok(Entry { key, payload })
    }

    /// Entry i's value in a page known to be a leaf: found from its cell's lengths, the key
    /// passed over (a lookup has just compared it).
    #[inline(always)]
    pub fn leaf_value(&self, i: usize) -> Result<Value<'a>> {
        Ok(self.leaf_entry(i)?.1)
    }

    /// Entry i of a page known to be a leaf, as (key, value), from its cell's lengths: what a
    /// scan reads of every entry.
    #[inline(always)]
    pub fn leaf_entry(&self, i: usize) -> Result<(&'a [u8], Value<'a>)> {
        let cell = self.leaf_cell(i)?;
        let key = cell.key();
        // The cell ends where its value does: after the value header come exactly the value's
        // bytes, or an overflow value's node id.
        let rest = &cell.raw[cell.key_at as usize + cell.key_len as usize..];
        let (header, n) = match rest.first() {
            Some(&b) if b < 0x80 => (u64::from(b), 1),
            _ => get_varint(rest).ok_or_else(|| self.corrupt(i, "bad value header"))?,
        };
        let body = &rest[n..];
        if header & 1 == 0 {
            return Ok((key, Value::Inline(body)));
        }
        let id = body.first_chunk::<8>().ok_or_else(|| self.corrupt(i, "cell runs past the page"))?;
        let len = u32::try_from(header >> 1).map_err(|_| self.corrupt(i, "overflow value length"))?;
        Ok((key, Value::Overflow(u64::from_le_bytes(*id), len)))
    }

    /// The child a probe belongs to in an internal page: the entry index of the last
    /// separator <= the probe, or None for the leftmost child. `order(separator)` compares a
    /// separator with the probe.
    #[inline]
    pub fn child_for(&self, order: impl Fn(&[u8]) -> std::cmp::Ordering) -> Result<(Option<usize>, u64)> {
        self.child_at(&ByKey(order))
    }

    /// `child_for` with a bytewise probe `key` whose [`prefix_word`] is `word`: compared with
    /// the words the slots record, a separator's cell read only where they tie.
    #[inline]
    pub fn child_for_bytewise(&self, word: u64, key: &[u8]) -> Result<(Option<usize>, u64)> {
        self.child_at(&SlotWords { word, key })
    }

    /// `child_for`, with `order` comparing separator j with the probe.
    #[inline(always)]
    fn child_at(&self, order: &impl KeyOrder) -> Result<(Option<usize>, u64)> {
        debug_assert!(!self.is_leaf());
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            if order.at(self, mid)? == std::cmp::Ordering::Greater {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        if lo == 0 {
            Ok((None, self.leftmost_child()))
        } else {
            Ok((Some(lo - 1), self.child(lo - 1)?))
        }
    }

    /// The child at position `pos` of an internal page: 0 is the leftmost child, j + 1 the
    /// child of separator j (the positions a descent's path records).
    #[inline]
    pub fn child_at_position(&self, pos: usize) -> Result<u64> {
        if pos == 0 && !self.is_leaf() {
            return Ok(self.leftmost_child());
        }
        self.child(pos.saturating_sub(1))
    }

    /// The child id of internal entry i, read without decoding the rest of its cell.
    #[inline(always)]
    pub fn child(&self, i: usize) -> Result<u64> {
        if self.is_leaf() {
            return Err(self.corrupt(i, "leaf cell in an internal page"));
        }
        let off = self.cell_offset(i)?;
        let (key_len, n) = self.varint(i, off)?;
        Ok(u64::from_le_bytes(*self.take_array::<8>(i, off + n + key_len)?))
    }

    /// `Ok(i)` when entry i's key equals the probe, `Err(i)` for where it would go.
    /// `order(key)` compares a stored key with the probe.
    #[inline]
    pub fn search(&self, order: impl Fn(&[u8]) -> std::cmp::Ordering) -> Result<std::result::Result<usize, usize>> {
        self.search_at(&ByKey(order))
    }

    /// `search` with a bytewise probe: see [`PageRef::cmp_bytewise`].
    #[inline]
    pub fn search_bytewise(&self, word: u64, key: &[u8]) -> Result<std::result::Result<usize, usize>> {
        self.search_at(&Bytewise { word, key })
    }

    /// `search`, with `order` comparing entry i's key with the probe.
    #[inline(always)]
    fn search_at(&self, order: &impl KeyOrder) -> Result<std::result::Result<usize, usize>> {
        let (mut lo, mut hi) = (0usize, self.len());
        // A leaf is often not in the cache (a large tree's leaves outnumber the cache's
        // lines): the slot array's lines are requested at once, and each probe requests the
        // cells of both probes that may follow it, so the misses overlap instead of queueing.
        for line in (CACHE_LINE..self.slots_end()).step_by(CACHE_LINE) {
            crate::os::prefetch(self.bytes, line);
        }
        while lo < hi {
            let mid = (lo + hi) / 2;
            self.prefetch_cell((lo + mid) / 2);
            self.prefetch_cell((mid + 1 + hi) / 2);
            match order.at(self, mid)? {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Ok(Ok(mid)),
            }
        }
        Ok(Err(lo))
    }

    /// How entry i's key compares, bytewise, with a probe `key` whose [`prefix_word`] is
    /// `word`. A key under 128 bytes whose cell has eight bytes after its length byte (every
    /// cell but a short one at the page's very end) gives its word in one load, masked to its
    /// length: no slice of it is made, and only keys whose words tie are compared whole.
    #[inline(always)]
    pub fn cmp_bytewise(&self, i: usize, word: u64, key: &[u8]) -> Result<std::cmp::Ordering> {
        let off = self.cell_offset(i)?;
        let cell = &self.bytes[off..];
        if let (Some(&len), Some(w)) = (cell.first(), cell.get(1..).and_then(<[u8]>::first_chunk::<8>)) {
            let len = len as usize;
            if len < 0x80 {
                let stored = u64::from_be_bytes(*w) & word_mask(len);
                if stored != word {
                    if len >= cell.len() {
                        return Err(self.corrupt(i, "cell runs past the page"));
                    }
                    return Ok(stored.cmp(&word));
                }
            }
        }
        Ok(self.key(i)?.cmp(key))
    }

    /// Requests the cache line of entry i's cell (its key's first bytes), if there is one.
    #[inline(always)]
    fn prefetch_cell(&self, i: usize) {
        if let Some(slot) = self.slots.get(i) {
            crate::os::prefetch(self.bytes, u16::from_le_bytes(*slot) as usize);
        }
    }

    /// A leaf value's header varint at `at`: (length << 1 | overflow, bytes read).
    #[inline]
    fn value_header(&self, i: usize, at: usize) -> Result<(u64, usize)> {
        match self.bytes.get(at) {
            Some(&b) if b < 0x80 => Ok((u64::from(b), 1)),
            _ => get_varint(self.bytes.get(at..).unwrap_or(&[])).ok_or_else(|| self.corrupt(i, "bad value header")),
        }
    }

    /// Entry i's cell of a page known to be a leaf: its bytes found from the lengths it
    /// records, nothing decoded.
    #[inline(always)]
    pub(super) fn leaf_cell(&self, i: usize) -> Result<Cell<'a>> {
        let off = self.cell_offset(i)?;
        // The common cell: a key under 128 bytes and an inline value under 64 (or an
        // overflow value's id), one length byte each.
        let cell = &self.bytes[off..];
        if let Some(&key_len) = cell.first() {
            let key_len = key_len as usize;
            if key_len < 0x80 {
                if let Some(&header) = cell.get(1 + key_len) {
                    if header < 0x80 {
                        let value = if header & 1 == 0 { (header >> 1) as usize } else { OVERFLOW_ID_BYTES };
                        if let Some(raw) = cell.get(..2 + key_len + value) {
                            return Ok(Cell { raw, key_at: 1, slot: SLOT_BYTES as u8, key_len: key_len as u16 });
                        }
                    }
                }
            }
        }
        self.leaf_cell_decoded(i, off)
    }

    /// Entry i of a page known to be a leaf, for a scan's quick path: see [`leaf_inline_at`].
    #[inline(always)]
    pub fn leaf_inline_quick(&self, i: usize) -> Option<(usize, usize, usize, usize)> {
        if i >= self.slots.len() {
            return None;
        }
        leaf_inline_at(self.bytes, self.cells_start, i)
    }

    /// `leaf_cell` for cells with longer lengths, and damaged ones.
    #[cold]
    #[inline(never)]
    fn leaf_cell_decoded(&self, i: usize, off: usize) -> Result<Cell<'a>> {
        let (key_len, n) = self.varint(i, off)?;
        let at = off + n + key_len;
        let (header, m) = self.value_header(i, at)?;
        let value = if header & 1 == 0 { header >> 1 } else { OVERFLOW_ID_BYTES as u64 };
        let value = usize::try_from(value).map_err(|_| self.corrupt(i, "value length"))?;
        let raw = self.take(i, off, (n + key_len + m).saturating_add(value))?;
        // A page is at most 64 KiB: the key's length fits a u16, its varint a u8.
        Ok(Cell { raw, key_at: n as u8, slot: SLOT_BYTES as u8, key_len: key_len as u16 })
    }

    /// Entry i's cell of a page known to be internal: its separator's length, the separator,
    /// its child.
    #[inline]
    pub(super) fn internal_cell(&self, i: usize) -> Result<Cell<'a>> {
        let off = self.cell_offset(i)?;
        let (key_len, n) = self.varint(i, off)?;
        let raw = self.take(i, off, n + key_len + 8)?;
        Ok(Cell { raw, key_at: n as u8, slot: WORD_SLOT_BYTES as u8, key_len: key_len as u16 })
    }

    /// Entry i's cell, whichever kind of page this is.
    #[inline]
    pub fn cell(&self, i: usize) -> Result<Cell<'a>> {
        match self.is_leaf() {
            true => self.leaf_cell(i),
            false => self.internal_cell(i),
        }
    }

    /// The bytes of entry i's cell (its slot not included), read from its lengths.
    pub(super) fn cell_len(&self, i: usize) -> Result<usize> {
        Ok(self.cell(i)?.raw.len())
    }

    /// Every cell, in order.
    pub fn cells(&self) -> Result<Vec<Cell<'a>>> {
        let mut out = Vec::with_capacity(self.len());
        if self.is_leaf() {
            for i in 0..self.len() {
                out.push(self.leaf_cell(i)?);
            }
        } else {
            for i in 0..self.len() {
                out.push(self.internal_cell(i)?);
            }
        }
        Ok(out)
    }

    /// Bytes the entries use (slots included), by the byte-accounting function.
    pub fn used_bytes(&self) -> Result<usize> {
        (0..self.len()).map(|i| self.entry_bytes(i)).sum()
    }

    /// The bytes entry i takes, its slot included ([`entry_bytes`] of it), from its lengths.
    pub fn entry_bytes(&self, i: usize) -> Result<usize> {
        Ok(self.cell_len(i)? + slot_bytes(self.bytes[0]))
    }

    /// Every entry, decoded: for tests (the tree reads cells, and values or children by index).
    #[cfg(test)]
    pub fn entries(&self) -> Result<Vec<Entry<'a>>> {
        let mut out = Vec::with_capacity(self.len());
        for i in 0..self.len() {
            out.push(self.entry(i)?);
        }
        Ok(out)
    }

    /// Contiguous free bytes between the slot array and the cells.
    pub fn gap_bytes(&self) -> usize {
        self.cells_start() - self.slots_end()
    }

    /// The page's capacity less its gap: the bytes its entries use when its cell area has no
    /// holes, which a leaf's never has (every leaf writer packs cells: `PageWriter`,
    /// `insert_in_place`, `insert_cells_in_place`), and an upper bound otherwise.
    pub fn occupied_bytes(&self) -> usize {
        capacity(self.bytes.len()) - self.gap_bytes()
    }
}

/// Entry i of a leaf's image `page` whose layout [`PageRef::parse`] accepted (with its cells
/// from `cells_start`, and more than i entries), for a scan's quick path: its key's and
/// inline value's byte ranges in the page, (key at, key length, value at, value length), for
/// the common cell (a key under 128 bytes, an inline value under 8 KiB); `None` for any other
/// (an overflow value, longer lengths, a damaged cell), which the caller reads through
/// [`PageRef::leaf_entry`] (it reports the damage). Checks what `leaf_cell` checks, with no
/// page to parse and no `Result` to build: a cursor's step decodes its entry this way.
#[inline(always)]
pub(crate) fn leaf_inline_at(page: &[u8], cells_start: usize, i: usize) -> Option<(usize, usize, usize, usize)> {
    let slot = page.get(HEADER_BYTES + i * SLOT_BYTES..)?.first_chunk::<SLOT_BYTES>()?;
    let off = u16::from_le_bytes(*slot) as usize;
    if off < cells_start {
        return None;
    }
    let key_len = *page.get(off)? as usize;
    if key_len >= 0x80 {
        return None;
    }
    let at = off + 1 + key_len;
    let header = *page.get(at)? as usize;
    let (header, value_at) = if header < 0x80 {
        (header, at + 1)
    } else {
        let high = *page.get(at + 1)? as usize;
        if high >= 0x80 {
            return None;
        }
        (header & 0x7F | high << 7, at + 2)
    };
    let value_len = header >> 1;
    if header & 1 != 0 || value_at + value_len > page.len() {
        return None;
    }
    Some((off + 1, key_len, value_at, value_len))
}
