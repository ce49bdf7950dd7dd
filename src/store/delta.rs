//! Delta records: a node's new version as the byte ranges that differ from its committed
//! version (the base), so a commit logs what it changed rather than whole pages.
//!
//! Encoding (see docs/LOG.md):
//! ```text
//! varint range count, then per range, in increasing offset order:
//!   varint gap from the previous range's end (from 0 for the first)
//!   varint length << 1 | copy
//!   copy:    zigzag varint shift; the range is base[offset - shift ..][.. length], or
//!            zero bytes when the shift is 0 (a copy of the base in place would not differ)
//!   literal: length bytes
//! ```
//! The new version is the base's first `min(base len, new len)` bytes with the ranges laid
//! over them; every byte at or past the base's length lies in a range. A copy lets an insert
//! into a slotted page log its shifted slot array as a few bytes.

/// A copy is at least this long: a shorter one saves too little over literal bytes.
const COPY_MIN_BYTES: usize = 16;
/// A differing region at least this long is searched for shifted copies of the base: a
/// shorter one is most likely a new cell, which no probe would find.
const COPY_SEARCH_MIN_BYTES: usize = 32;
/// How far (bytes, either way) a copy's source may lie from its target: slot arrays of
/// slotted pages shift by one or a few slots.
const SHIFT_MAX: usize = 64;
/// The probe a shifted copy is found by.
const PROBE_BYTES: usize = 8;

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for i in 0..10 {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// First index at or after `from` where `a` and `b` differ, within `..end` (`end` if none).
fn first_difference(a: &[u8], b: &[u8], from: usize, end: usize) -> usize {
    let mut i = from;
    // Most of a page is unchanged: skip it 32 bytes at a time (the compiler vectorizes this).
    while i + 32 <= end && a[i..i + 32] == b[i..i + 32] {
        i += 32;
    }
    while i + 8 <= end {
        let x = u64::from_le_bytes(a[i..i + 8].try_into().expect("8 bytes"));
        let y = u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        if x != y {
            return i + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while i < end && a[i] == b[i] {
        i += 1;
    }
    i
}

fn is_zero(b: &[u8]) -> bool {
    let mut words = b.chunks_exact(8);
    words.all(|w| w == [0; 8]) && words.remainder().iter().all(|&x| x == 0)
}

fn word(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Equal bytes that end a differing region: a shorter run of equal bytes costs less as
/// literal bytes than as the header of another range.
const EQUAL_RUN_MIN: usize = 4;

/// Bit 8 * b of the result is set when bytes b..b + 4 of `x` are all zero.
fn zero_runs_of_4(x: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let nonzero = (((x & LOW7) + LOW7) | x) & !LOW7; // high bit of each nonzero byte
    let zero = (!nonzero & !LOW7) >> 7;
    zero & (zero >> 8) & (zero >> 16) & (zero >> 24)
}

/// End of the differing region starting at `start` (where the bytes differ): the first run
/// of `EQUAL_RUN_MIN` equal bytes within `..common`, or the end of `new` when there is none
/// (everything past the base differs). Scanned a word at a time: 8-byte windows 4 apart
/// see every run of 4.
fn region_end(base: &[u8], new: &[u8], start: usize, common: usize) -> usize {
    let trim = |mut i: usize| {
        while i > start && new[i - 1] == base[i - 1] {
            i -= 1;
        }
        i
    };
    let mut i = start;
    while i + 8 <= common {
        let runs = zero_runs_of_4(word(new, i) ^ word(base, i));
        if runs != 0 {
            return trim(i + (runs.trailing_zeros() / 8) as usize);
        }
        i += 4;
    }
    while i < common {
        if new[i] != base[i] {
            i += 1;
            continue;
        }
        let run = first_difference(new, base, i, common.min(i + EQUAL_RUN_MIN));
        if run - i >= EQUAL_RUN_MIN || (run == common && common == new.len()) {
            return trim(i);
        }
        i = run;
    }
    new.len()
}

/// The base offset nearest `at` holding the 8 bytes `probe`, within `SHIFT_MAX` of it, `at`
/// excluded.
fn find_shifted(base: &[u8], probe: &[u8], at: usize) -> Option<usize> {
    let want = u64::from_le_bytes(probe.try_into().expect("8 bytes"));
    let hit = |p: usize| {
        base.get(p..p + PROBE_BYTES).is_some_and(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")) == want)
    };
    (1..=SHIFT_MAX).find_map(|d| {
        if at >= d && hit(at - d) {
            Some(at - d)
        } else if hit(at + d) {
            Some(at + d)
        } else {
            None
        }
    })
}

/// Probes that find no shifted copy before a region's rest is taken as literal bytes: bounds
/// the search in a region that was rewritten rather than shifted.
const PROBE_MISSES_MAX: usize = 8;

/// A piece of a differing region: literal bytes, or a copy of the base shifted by `shift`.
#[derive(Clone, Copy)]
struct Piece {
    start: usize,
    end: usize,
    shift: Option<i64>,
}

/// The pieces `new[start..end]` is made of, right to left: shifted copies of the base where
/// one at least `COPY_SEARCH_MIN_BYTES` long is found near its place (each insert into a
/// slotted page shifts what follows it; each removal shifts it back), literal bytes between.
fn pieces(base: &[u8], new: &[u8], start: usize, end: usize, out: &mut Vec<Piece>) {
    let (mut pos, mut literal_end, mut misses) = (end, end, 0);
    while pos >= start + COPY_MIN_BYTES && misses < PROBE_MISSES_MAX {
        let at = pos - PROBE_BYTES;
        let Some(src) = find_shifted(base, &new[at..pos], at) else {
            pos -= 1;
            misses += 1;
            continue;
        };
        let shift = at as i64 - src as i64;
        let base_at = |k: usize| base.get((k as i64 - shift) as usize).copied();
        let src_of = |k: usize| (k as i64 - shift) as usize; // in range where used: checked
        let mut k = at;
        while k >= start + 8 && k as i64 - 8 - shift >= 0 && word(new, k - 8) == word(base, src_of(k - 8)) {
            k -= 8;
        }
        while k > start && k as i64 - 1 - shift >= 0 && base_at(k - 1) == Some(new[k - 1]) {
            k -= 1;
        }
        let mut j = pos;
        while j + 8 <= literal_end && src_of(j) + 8 <= base.len() && word(new, j) == word(base, src_of(j)) {
            j += 8;
        }
        while j < literal_end && base_at(j) == Some(new[j]) {
            j += 1;
        }
        if j - k < COPY_MIN_BYTES {
            pos -= 1;
            misses += 1;
            continue;
        }
        out.push(Piece { start: j, end: literal_end, shift: None });
        out.push(Piece { start: k, end: j, shift: Some(shift) });
        (pos, literal_end, misses) = (k, k, 0);
    }
    out.push(Piece { start, end: literal_end, shift: None });
}

/// A literal stretch at least this long, left after the search near its place, is searched
/// for copies from anywhere in the base: a page rewritten by a split keeps most of its cells,
/// packed elsewhere.
const FAR_SEARCH_MIN_BYTES: usize = 64;
/// The far-copy index holds the base's words at offsets a multiple of this: a copy of
/// `COPY_MIN_BYTES` (16) at any offset holds one whole such word.
const FAR_INDEX_STEP: usize = 8;

/// Where in a base each 8-byte word (every `FAR_INDEX_STEP`th offset) lies, by hash, in about
/// four slots a word (a 4 KiB page: 512 words in 2,048 slots of 2 bytes, so few collide);
/// collisions keep the earlier offset (the start of a run). Words past `u16::MAX` steps are
/// not indexed: a copy from there is logged literally.
struct FarIndex {
    slots: Vec<u16>,
    shift: u32,
}

impl FarIndex {
    const NONE: u16 = u16::MAX;

    fn new(base: &[u8]) -> FarIndex {
        let words = (base.len() / FAR_INDEX_STEP).clamp(64, usize::from(Self::NONE));
        let bits = (4 * words).next_power_of_two().trailing_zeros();
        let mut index = FarIndex { slots: vec![Self::NONE; 1 << bits], shift: 64 - bits };
        for (step, at) in (0..base.len().saturating_sub(7)).step_by(FAR_INDEX_STEP).enumerate().take(words) {
            let slot = index.slot(word(base, at));
            if index.slots[slot] == Self::NONE {
                index.slots[slot] = step as u16;
            }
        }
        index
    }

    #[inline(always)]
    fn slot(&self, w: u64) -> usize {
        (w.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The base offset of a word equal to `w`, if one is indexed.
    #[inline(always)]
    fn find(&self, base: &[u8], w: u64) -> Option<usize> {
        let step = self.slots[self.slot(w)];
        let at = usize::from(step) * FAR_INDEX_STEP;
        (step != Self::NONE && word(base, at) == w).then_some(at)
    }

    /// The copy of the base around `new[q..q + 8]`, extended back to `floor` and on to `end`
    /// while the bytes agree: `(start, end, shift)`, when it is at least `COPY_MIN_BYTES` long.
    #[inline(always)]
    fn copy_at(&self, base: &[u8], new: &[u8], q: usize, floor: usize, end: usize) -> Option<(usize, usize, i64)> {
        let p = self.find(base, word(new, q))?;
        let (mut k, mut j) = (q, q + 8);
        while k > floor && q - k < p && new[k - 1] == base[p - (q - k) - 1] {
            k -= 1;
        }
        let limit = end.min(q + (base.len() - p));
        while j + 8 <= limit && word(new, j) == word(base, p + (j - q)) {
            j += 8;
        }
        while j < limit && new[j] == base[p + (j - q)] {
            j += 1;
        }
        (j - k >= COPY_MIN_BYTES).then_some((k, j, q as i64 - p as i64))
    }
}

/// How far the far search moves after a miss, `missed` bytes into a stretch of literal bytes:
/// one byte at first, then further (odd steps, so that every offset modulo the index's
/// `FAR_INDEX_STEP` of 8 still comes up within eight probes: a copy is found at most 56 bytes
/// in, and extended back to its start). New cells are literal bytes: probing each of their
/// positions was most of the encoder's time on a split page, for copies that are not there.
#[inline(always)]
fn probe_step(missed: usize) -> usize {
    1 + 2 * (missed >> 5).min(3)
}

/// Zero bytes in a row that a literal logs as a zero run (a copy with shift 0) instead.
const ZERO_RUN_MIN_BYTES: usize = 12;

struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    count: u64,
    prev_end: usize,
    pieces: Vec<Piece>,
    /// Search for shifted copies (not against zeros, which hold none of a region's bytes).
    search: bool,
    /// The base's far-copy index, built at the first far search.
    far: Option<FarIndex>,
}

impl Encoder<'_> {
    /// Emits `new[start..end]` as literal bytes, but for runs of zeros (a page's cleared free
    /// space), each a copy with shift 0.
    fn literal(&mut self, new: &[u8], start: usize, end: usize) {
        let (mut at, mut literal_start) = (start, start);
        while at + 8 <= end {
            if word(new, at) != 0 {
                at += 4;
                continue;
            }
            let (mut from, mut to) = (at, at + 8);
            while from > literal_start && new[from - 1] == 0 {
                from -= 1;
            }
            while to < end && new[to] == 0 {
                to += 1;
            }
            if to - from >= ZERO_RUN_MIN_BYTES {
                self.bytes(new, literal_start, from);
                self.copy(from, to, 0);
                literal_start = to;
            }
            at = to;
        }
        self.bytes(new, literal_start, end);
    }

    fn bytes(&mut self, new: &[u8], start: usize, end: usize) {
        if start < end {
            put_varint(self.out, (start - self.prev_end) as u64);
            put_varint(self.out, ((end - start) as u64) << 1);
            self.out.extend_from_slice(&new[start..end]);
            self.count += 1;
            self.prev_end = end;
        }
    }

    fn copy(&mut self, start: usize, end: usize, shift: i64) {
        put_varint(self.out, (start - self.prev_end) as u64);
        put_varint(self.out, ((end - start) as u64) << 1 | 1);
        put_varint(self.out, zigzag(shift));
        self.count += 1;
        self.prev_end = end;
    }

    /// Emits `new[start..end]`, a region that differs from the base at the same offsets.
    fn region(&mut self, base: &[u8], new: &[u8], start: usize, end: usize) {
        if !self.search || end - start < COPY_SEARCH_MIN_BYTES || is_zero(&base[start..end.min(base.len())]) {
            // Bytes written where the base had none (a slotted page's new cells in its free
            // space) are new: no copy of the base is there to find.
            return self.literal(new, start, end);
        }
        let mut found = std::mem::take(&mut self.pieces);
        found.clear();
        pieces(base, new, start, end, &mut found);
        for p in found.iter().rev() {
            match p.shift {
                Some(shift) => self.copy(p.start, p.end, shift),
                None if p.end - p.start >= FAR_SEARCH_MIN_BYTES => self.far_copies(base, new, p.start, p.end),
                None => self.literal(new, p.start, p.end),
            }
        }
        self.pieces = found;
    }

    /// Emits the whole of `new` as a page rewritten from `base`: stretches equal at the same
    /// offsets are skipped, others are copies from anywhere in the base (the far index) where
    /// one of `COPY_MIN_BYTES` or more is found, literal bytes (zero runs as copies) between.
    fn rewritten(&mut self, base: &[u8], new: &[u8], common: usize) {
        let index = FarIndex::new(base);
        let (mut q, mut literal_start) = (0, 0);
        while q + 8 <= common {
            if word(new, q) == word(base, q) {
                let mut k = q;
                while k > literal_start && new[k - 1] == base[k - 1] {
                    k -= 1;
                }
                self.literal(new, literal_start, k);
                q = first_difference(new, base, q + 8, common);
                literal_start = q;
                continue;
            }
            let Some((k, j, shift)) = index.copy_at(base, new, q, literal_start, common) else {
                q += probe_step(q - literal_start);
                continue;
            };
            self.literal(new, literal_start, k);
            self.copy(k, j, shift);
            (q, literal_start) = (j, j);
        }
        if literal_start < common && new[literal_start..common] == base[literal_start..common] {
            self.literal(new, common, new.len());
        } else {
            self.literal(new, literal_start, new.len());
        }
    }

    /// Emits `new[start..end]` as copies of base stretches found anywhere in it (by the far
    /// index), at least `COPY_MIN_BYTES` long, and literal bytes between.
    fn far_copies(&mut self, base: &[u8], new: &[u8], start: usize, end: usize) {
        let index = self.far.get_or_insert_with(|| FarIndex::new(base));
        let mut found: Vec<(usize, usize, i64)> = Vec::new();
        let (mut q, mut literal_start) = (start, start);
        while q + 8 <= end {
            match index.copy_at(base, new, q, literal_start, end) {
                Some(copy @ (_, j, shift)) if shift != 0 => {
                    found.push(copy);
                    (q, literal_start) = (j, j);
                }
                _ => q += 1,
            }
        }
        let mut at = start;
        for (k, j, shift) in found {
            self.literal(new, at, k);
            self.copy(k, j, shift);
            at = j;
        }
        self.literal(new, at, end);
    }
}

/// Appends the delta from `base` to `new` to `out`. False (and `out` as it was) when the
/// delta would not be smaller than `new` itself: log the payload whole then.
pub(crate) fn encode(base: &[u8], new: &[u8], out: &mut Vec<u8>) -> bool {
    encode_with(base, new, out, new.len() >= SEARCH_NODE_MIN_BYTES)
}

/// Nodes shorter than this are not searched for copies: a copy saves at most its bytes less
/// a few of range header, which in a node this small is less than the search costs (probing
/// 64 shifts each way, then the far index: about a microsecond for a 64-byte node rewritten
/// whole, a third of a one-node STRICT commit on tmpfs).
const SEARCH_NODE_MIN_BYTES: usize = 256;

/// The most a delta's buffer is sized for up front (a delta is used only when smaller than
/// its node; a larger one grows as it goes).
const DELTA_CAPACITY_MAX: usize = 4096;

/// As `encode`, against `new.len()` zero bytes (`zeros`): literal ranges of `new` between
/// runs of `SPARSE_ZERO_RUN_MIN` or more zero bytes, found a word at a time (the general
/// encoder spent ~22 instructions a byte of a new 4 KiB page).
pub(crate) fn encode_sparse(zeros: &[u8], new: &[u8], out: &mut Vec<u8>) -> bool {
    debug_assert!(zeros.len() == new.len() && zeros.iter().all(|&b| b == 0));
    if !literal_delta_may_fit(zeros, new) {
        return false;
    }
    let start_len = out.len();
    let mut body = Vec::with_capacity(new.len().min(DELTA_CAPACITY_MAX) + 16);
    let mut e = Encoder { out: &mut body, count: 0, prev_end: 0, pieces: Vec::new(), search: false, far: None };
    let mut at = first_difference(new, zeros, 0, new.len());
    while at < new.len() {
        let (end, next) = next_long_zero_run(new, zeros, at);
        e.bytes(new, at, end);
        at = next;
    }
    finish(e, out, start_len, new.len())
}

/// Zero bytes that end a literal range of a sparse payload. Shorter runs stay in the literal:
/// a run costs its bytes there, a new range 2 to 4 bytes of header, but a node's short runs
/// (the high bytes of small integers in every B+ tree cell) made a range each, ~400 of them
/// in a new 4 KiB leaf, and encoding one took 67 k instructions; this takes ~5 k and logs a
/// few percent more of such a page.
const SPARSE_ZERO_RUN_MIN: usize = 16;

/// The first run of `SPARSE_ZERO_RUN_MIN` or more zero bytes at or after `from`, as (its
/// start, the first nonzero byte after it), or `(b.len(), b.len())`. Such a run holds a zero
/// word at one of `from`, `from + 8`, ..., so only those are looked at until one is found.
fn next_long_zero_run(b: &[u8], zeros: &[u8], from: usize) -> (usize, usize) {
    let mut i = from;
    while i + 8 <= b.len() {
        if word(b, i) != 0 {
            i += 8;
            continue;
        }
        let start = i - b[from..i].iter().rev().take_while(|&&x| x == 0).count();
        let next = first_difference(b, zeros, i + 8, b.len());
        if next - start >= SPARSE_ZERO_RUN_MIN {
            return (start, next);
        }
        i = next;
    }
    (b.len(), b.len())
}

fn encode_with(base: &[u8], new: &[u8], out: &mut Vec<u8>, search: bool) -> bool {
    if !search && !literal_delta_may_fit(base, new) {
        return false;
    }
    encode_ranges(base, new, out, search)
}

fn encode_ranges(base: &[u8], new: &[u8], out: &mut Vec<u8>, search: bool) -> bool {
    let start_len = out.len();
    let common = base.len().min(new.len());
    // Sized once: growing a byte vector from empty costs a reallocation per doubling, more
    // than the encoding of a small node's delta itself.
    let mut body = Vec::with_capacity(new.len().min(DELTA_CAPACITY_MAX) + 16);
    let mut e = Encoder { out: &mut body, count: 0, prev_end: 0, pieces: Vec::new(), search, far: None };
    if search && differs_in_many_chunks(base, new, common) {
        e.rewritten(base, new, common);
        return finish(e, out, start_len, new.len());
    }
    let mut i = 0;
    loop {
        let start = first_difference(new, base, i, common);
        if start == common && common == new.len() {
            break;
        }
        let end = region_end(base, new, start, common);
        e.region(base, new, start, end);
        if end == new.len() {
            break;
        }
        i = end;
    }
    finish(e, out, start_len, new.len())
}

/// False when a delta without searched copies cannot be smaller than `new`, which a count
/// decides before any encoding: without such copies, a byte of `new` that is not zero and
/// differs from the base (or lies past it) is logged as a literal byte, and its range costs at
/// least 2 bytes of header, after the 1-byte range count. A small node rewritten whole (most
/// of a one-node commit's CPU went to encoding it twice, as a delta and as sparse, to throw
/// both away) is decided in a few instructions a word; `encode_with` would decide the same.
fn literal_delta_may_fit(base: &[u8], new: &[u8]) -> bool {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    // The high bit of each nonzero byte of `x`.
    let nonzero = |x: u64| (((x & LOW7) + LOW7) | x) & !LOW7;
    let load = |w: &[u8]| u64::from_le_bytes(w.try_into().expect("8 bytes"));
    let common = base.len().min(new.len()) / 8 * 8;
    let mut literal = 0;
    for (n, b) in new[..common].chunks_exact(8).zip(base[..common].chunks_exact(8)) {
        let (n, b) = (load(n), load(b));
        // One bit a byte, summed into the top byte by the multiply (`count_ones` is a
        // dozen instructions where the target has no popcnt, as x86-64's baseline).
        let bytes = (nonzero(n) & nonzero(n ^ b)) >> 7;
        literal += (bytes.wrapping_mul(0x0101_0101_0101_0101) >> 56) as usize;
    }
    let past = |i: usize| base.get(i).is_none_or(|&b| b != new[i]);
    literal += (common..new.len()).filter(|&i| new[i] != 0 && past(i)).count();
    literal == 0 || 3 + literal < new.len()
}

/// Appends the encoder's ranges to `out` after their count; false (and `out` as it was at
/// `start_len`) when they would not be smaller than the `new_len` bytes they describe.
fn finish(e: Encoder<'_>, out: &mut Vec<u8>, start_len: usize, new_len: usize) -> bool {
    put_varint(out, e.count);
    out.extend_from_slice(e.out);
    if out.len() - start_len >= new_len {
        out.truncate(start_len);
        return false;
    }
    true
}

/// Chunks of 32 bytes a node's new version must differ from its base in, at the same offsets,
/// to be encoded as rewritten (`Encoder::rewritten`): a page a split, a shift into a sibling
/// or a compaction repacked keeps most of its bytes, elsewhere, and its cells agree with the
/// base's same offsets every few bytes by chance (their zero bytes), which cuts them into
/// pieces too small to search.
const REWRITTEN_CHUNKS_MIN: usize = 32;

/// True when `new` differs from `base` in at least `REWRITTEN_CHUNKS_MIN` chunks of 32 bytes.
fn differs_in_many_chunks(base: &[u8], new: &[u8], common: usize) -> bool {
    let mut differing = 0;
    for (a, b) in base[..common].chunks_exact(32).zip(new[..common].chunks_exact(32)) {
        differing += usize::from(a != b);
        if differing >= REWRITTEN_CHUNKS_MIN {
            return true;
        }
    }
    false
}

/// Bytes the delta at the start of `enc` takes (its ranges are checked for sanity only:
/// `apply` checks them against the base), or why it cannot be read.
pub(crate) fn encoded_len(enc: &[u8], new_len: usize) -> Result<usize, String> {
    let mut pos = 0;
    let count = get_varint(enc, &mut pos).ok_or("delta range count cut short")?;
    let mut at = 0u64;
    for _ in 0..count {
        let gap = get_varint(enc, &mut pos).ok_or("delta range cut short")?;
        let word = get_varint(enc, &mut pos).ok_or("delta range cut short")?;
        at = at.saturating_add(gap).saturating_add(word >> 1);
        if at > new_len as u64 {
            return Err(format!("delta range ends at {at}, past the node's {new_len} bytes"));
        }
        if word & 1 == 1 {
            get_varint(enc, &mut pos).ok_or("delta shift cut short")?;
        } else {
            pos = pos.checked_add((word >> 1) as usize).filter(|&p| p <= enc.len()).ok_or("delta bytes cut short")?;
        }
    }
    Ok(pos)
}

/// Rebuilds the new version into `out` (its length is the new length) from `base` and the
/// delta `enc`, or says why the delta does not fit the base.
/// The ranges of the node a delta writes, into `changed` (outside them the node is its base,
/// for a node as long as its base): to update the node's CRC from its base's
/// (`crc_update.rs`). `None` when the delta is cut short.
pub(crate) fn changed_ranges(enc: &[u8], changed: &mut super::crc_update::Changed) -> Option<()> {
    let mut pos = 0;
    let count = get_varint(enc, &mut pos)?;
    let mut at = 0usize;
    for _ in 0..count {
        let start = at.checked_add(get_varint(enc, &mut pos)? as usize)?;
        let word = get_varint(enc, &mut pos)?;
        let end = start.checked_add((word >> 1) as usize)?;
        if word & 1 == 1 {
            get_varint(enc, &mut pos)?; // a copy's shift
        } else {
            pos = pos.checked_add(end - start)?; // a literal's bytes
        }
        changed.add(start, end);
        at = end;
    }
    Some(())
}

pub(crate) fn apply(base: &[u8], enc: &[u8], out: &mut [u8]) -> Result<(), String> {
    let common = base.len().min(out.len());
    out[..common].copy_from_slice(&base[..common]);
    let mut pos = 0;
    let count = get_varint(enc, &mut pos).ok_or("delta range count cut short")?;
    let (mut at, mut covered) = (0usize, common);
    for _ in 0..count {
        let gap = get_varint(enc, &mut pos).ok_or("delta range cut short")?;
        let word = get_varint(enc, &mut pos).ok_or("delta range cut short")?;
        let len = (word >> 1) as usize;
        let start = at.checked_add(gap as usize).ok_or("delta offset overflows")?;
        let end = start.checked_add(len).filter(|&e| e <= out.len()).ok_or("delta range past the node's end")?;
        if word & 1 == 1 {
            let shift = unzigzag(get_varint(enc, &mut pos).ok_or("delta shift cut short")?);
            if shift == 0 {
                out[start..end].fill(0);
                if start <= covered {
                    covered = covered.max(end);
                }
                at = end;
                continue;
            }
            let src = (start as i64).checked_sub(shift).filter(|&s| s >= 0).ok_or("delta copy before the base")?;
            let src = base.get(src as usize..src as usize + len).ok_or("delta copy past the base's end")?;
            out[start..end].copy_from_slice(src);
        } else {
            let bytes = enc.get(pos..pos + len).ok_or("delta bytes cut short")?;
            out[start..end].copy_from_slice(bytes);
            pos += len;
        }
        if start <= covered {
            covered = covered.max(end);
        }
        at = end;
    }
    if covered < out.len() {
        return Err(format!("delta leaves bytes {covered}.. of {} past the base undefined", out.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    fn round_trip(base: &[u8], new: &[u8]) -> Option<usize> {
        let mut enc = vec![0xEE]; // something before: encode appends
        if !encode(base, new, &mut enc) {
            assert_eq!(enc, [0xEE]);
            return None;
        }
        assert_eq!(encoded_len(&enc[1..], new.len()).unwrap(), enc.len() - 1);
        let mut out = vec![0u8; new.len()];
        apply(base, &enc[1..], &mut out).unwrap();
        assert_eq!(out, new);
        Some(enc.len() - 1)
    }

    /// The count that decides a small node's delta up front never refuses one the encoder
    /// would have made: nodes of every small length, against bases of other lengths and
    /// zeros, changed in from none to all of their bytes, some of them to zero.
    #[test]
    fn the_up_front_count_refuses_only_deltas_too_large() {
        let mut rng = Rng(17);
        let (mut refused, mut made) = (0, 0);
        for _ in 0..20_000 {
            let new_len = 1 + rng.below(SEARCH_NODE_MIN_BYTES - 1);
            let base_len = if rng.below(4) == 0 { rng.below(2 * new_len) } else { new_len };
            let base: Vec<u8> = (0..base_len).map(|_| rng.next() as u8).collect();
            let mut new: Vec<u8> = (0..new_len).map(|i| base.get(i).copied().unwrap_or(0)).collect();
            let changes = rng.below(new_len + 1);
            for _ in 0..changes {
                let at = rng.below(new_len);
                new[at] = if rng.below(3) == 0 { 0 } else { rng.next() as u8 };
            }
            let zeros = vec![0u8; new_len];
            for (b, search) in [(&base[..], new_len >= SEARCH_NODE_MIN_BYTES), (&zeros[..], false)] {
                let mut out = Vec::new();
                let encodes = encode_ranges(b, &new, &mut out, search);
                if !literal_delta_may_fit(b, &new) {
                    assert!(!encodes, "refused a delta of {} bytes for {new_len}", out.len());
                    refused += 1;
                } else {
                    made += usize::from(encodes);
                }
                let mut via = Vec::new();
                assert_eq!(encode_with(b, &new, &mut via, search), encodes);
                assert_eq!(via, out);
            }
        }
        assert!(refused > 1000 && made > 1000, "both kinds tried: {refused} refused, {made} made");
    }

    /// A slotted page: u16 count, u16 slots from 16 up, 27-byte cells from the end down.
    fn page_insert(page: &mut [u8], rng: &mut Rng) {
        let n = u16::from_le_bytes([page[2], page[3]]) as usize;
        let cell_start = u16::from_le_bytes([page[4], page[5]]) as usize;
        let cell_start = if cell_start == 0 { page.len() } else { cell_start };
        let at = rng.below(n + 1);
        let cell = cell_start - 27;
        for b in &mut page[cell..cell_start] {
            *b = rng.next() as u8;
        }
        page.copy_within(16 + 2 * at..16 + 2 * n, 16 + 2 * at + 2);
        page[16 + 2 * at..16 + 2 * at + 2].copy_from_slice(&(cell as u16).to_le_bytes());
        page[2..4].copy_from_slice(&((n + 1) as u16).to_le_bytes());
        page[4..6].copy_from_slice(&(cell as u16).to_le_bytes());
    }

    #[test]
    fn an_insert_into_a_slotted_page_logs_the_cell_and_a_copy_of_the_slots() {
        let mut rng = Rng(7);
        let mut page = vec![0u8; 4096];
        for _ in 0..100 {
            page_insert(&mut page, &mut rng);
        }
        let mut worst = 0;
        for _ in 0..200 {
            let base = page.clone();
            page_insert(&mut page, &mut rng);
            worst = worst.max(round_trip(&base, &page).unwrap());
            if u16::from_le_bytes([page[2], page[3]]) > 130 {
                page = base;
            }
        }
        // The cell (27), the new slot (2), the header (4), range headers, and the slots shifted
        // past the insert only when they are fewer than `COPY_SEARCH_MIN_BYTES`.
        assert!(worst < 27 + 2 + 4 + 12 + COPY_SEARCH_MIN_BYTES, "a delta of {worst} bytes");
    }

    #[test]
    fn several_inserts_into_a_slotted_page_log_a_copy_per_shifted_run() {
        let mut rng = Rng(11);
        let mut page = vec![0u8; 4096];
        for _ in 0..60 {
            page_insert(&mut page, &mut rng);
        }
        let base = page.clone();
        for _ in 0..3 {
            page_insert(&mut page, &mut rng);
        }
        let bytes = round_trip(&base, &page).unwrap();
        assert!(bytes < 3 * 45, "three inserts logged {bytes} bytes");
    }

    #[test]
    fn a_page_rewritten_with_its_cells_moved_logs_copies_of_them() {
        let mut rng = Rng(21);
        let mut base = vec![0u8; 4096];
        for _ in 0..130 {
            page_insert(&mut base, &mut rng);
        }
        // As a split leaves the left half: the first 65 entries' cells packed at the end, in
        // slot order, under a new slot array.
        let mut new = vec![0u8; 4096];
        let mut cell_end = 4096;
        for i in 0..65 {
            let at = u16::from_le_bytes([base[16 + 2 * i], base[17 + 2 * i]]) as usize;
            new[cell_end - 27..cell_end].copy_from_slice(&base[at..at + 27]);
            cell_end -= 27;
            new[16 + 2 * i..18 + 2 * i].copy_from_slice(&(cell_end as u16).to_le_bytes());
        }
        new[2..4].copy_from_slice(&65u16.to_le_bytes());
        new[4..6].copy_from_slice(&(cell_end as u16).to_le_bytes());
        let bytes = round_trip(&base, &new).unwrap();
        // The new slots (130) and a copy of a few bytes per cell, not the cells (1,755).
        assert!(bytes < 800, "a split's rewritten half logged {bytes} bytes");
    }

    /// A leaf with 17-byte keys and 8-byte values, as a SQL index keeps them: the keys' and
    /// values' high bytes are zero, so a repacked cell agrees with whatever lay at its new
    /// offset every few bytes.
    fn structured_cell(rng: &mut Rng, i: u64) -> [u8; 27] {
        let mut cell = [0u8; 27];
        cell[0] = 17;
        cell[1..9].copy_from_slice(&rng.next().to_be_bytes());
        cell[9..17].copy_from_slice(&i.to_be_bytes());
        cell[17] = 16;
        cell[18..26].copy_from_slice(&i.to_le_bytes());
        cell
    }

    #[test]
    fn a_repacked_page_of_cells_with_zero_bytes_logs_a_copy_per_cell() {
        let mut rng = Rng(33);
        let (mut base, mut cells) = (vec![0u8; 4096], Vec::new());
        let mut cell_end = 4096;
        for i in 0..130u64 {
            let cell = structured_cell(&mut rng, 1000 + i);
            cell_end -= 27;
            base[cell_end..cell_end + 27].copy_from_slice(&cell);
            cells.push(cell_end);
        }
        // Slots in key order, cells in the order they came: a random permutation.
        for i in (1..cells.len()).rev() {
            cells.swap(i, rng.below(i + 1));
        }
        for (i, &at) in cells.iter().enumerate() {
            base[16 + 2 * i..18 + 2 * i].copy_from_slice(&(at as u16).to_le_bytes());
        }
        base[2..4].copy_from_slice(&130u16.to_le_bytes());
        base[4..6].copy_from_slice(&(cell_end as u16).to_le_bytes());
        // The page after its upper half moved to a sibling: 65 cells repacked in slot order.
        let mut new = vec![0u8; 4096];
        let mut end = 4096;
        for (i, &at) in cells.iter().take(65).enumerate() {
            end -= 27;
            new[end..end + 27].copy_from_slice(&base[at..at + 27]);
            new[16 + 2 * i..18 + 2 * i].copy_from_slice(&(end as u16).to_le_bytes());
        }
        new[2..4].copy_from_slice(&65u16.to_le_bytes());
        new[4..6].copy_from_slice(&(end as u16).to_le_bytes());
        let bytes = round_trip(&base, &new).unwrap();
        // The slots (130) and about four bytes a cell, not the cells cut at their zero bytes.
        assert!(bytes < 130 + 6 * 65, "a repacked page logged {bytes} bytes");
    }

    /// The far index holds every 8th word of the base: a copy of `COPY_MIN_BYTES` from any
    /// offset still holds one of them, so it is found at every alignment.
    #[test]
    fn a_far_copy_of_16_bytes_is_found_at_every_alignment() {
        let mut rng = Rng(5);
        let base: Vec<u8> = (0..4096).map(|_| rng.next() as u8).collect();
        let rewritten: Vec<u8> = (0..300).map(|_| rng.next() as u8).collect();
        for from in 2000..2000 + FAR_INDEX_STEP {
            let mut without = base.clone();
            without[1000..1300].copy_from_slice(&rewritten);
            let mut with = without.clone();
            with[1100..1100 + COPY_MIN_BYTES].copy_from_slice(&base[from..from + COPY_MIN_BYTES]);
            let (a, b) = (round_trip(&base, &with).unwrap(), round_trip(&base, &without).unwrap());
            assert!(a + 8 <= b, "a copy from offset {from}: {a} bytes against {b} without it");
        }
    }

    #[test]
    fn zero_runs_of_4_are_found_at_every_offset() {
        for at in 0..5 {
            let mut x = u64::MAX;
            for b in at..at + 4 {
                x &= !(0xFFu64 << (8 * b));
            }
            assert_eq!(zero_runs_of_4(x).trailing_zeros() / 8, at as u32, "run at {at}");
        }
        assert_eq!(zero_runs_of_4(0xFF00_00FF_0000_FF00), 0);
        assert_eq!(zero_runs_of_4(0x0100_0000_0100_0000), 0);
    }

    #[test]
    fn sparse_pages_round_trip_and_skip_only_long_zero_runs() {
        let mut rng = Rng(7);
        for case in 0..2000 {
            let mut new = vec![0u8; rng.below(700)];
            for _ in 0..rng.below(8) {
                if new.is_empty() {
                    break;
                }
                let (a, b) = (rng.below(new.len()), rng.below(new.len()));
                let dense = rng.below(2) == 0;
                new[a.min(b)..a.max(b)]
                    .iter_mut()
                    .for_each(|x| *x = if dense { 1 | rng.next() as u8 } else { (rng.next() % 3) as u8 });
            }
            let zeros = vec![0u8; new.len()];
            let mut enc = vec![0xEE];
            if !encode_sparse(&zeros, &new, &mut enc) {
                assert_eq!(enc, [0xEE], "case {case}");
                continue;
            }
            assert_eq!(encoded_len(&enc[1..], new.len()).unwrap(), enc.len() - 1, "case {case}");
            let mut out = vec![0u8; new.len()];
            apply(&zeros, &enc[1..], &mut out).unwrap();
            assert_eq!(out, new, "case {case}");
        }
        // A page's free space between its slots and its cells is not logged.
        let mut page = vec![0u8; 4096];
        page[..300].fill(7);
        page[3000..].iter_mut().enumerate().for_each(|(i, b)| *b = (i % 5) as u8);
        let mut enc = Vec::new();
        assert!(encode_sparse(&vec![0u8; 4096], &page, &mut enc));
        assert!(enc.len() < 300 + 1096 + 16, "{} bytes", enc.len());
    }

    #[test]
    fn random_edits_round_trip() {
        let mut rng = Rng(1);
        for case in 0..3000 {
            let base_len = rng.below(600);
            let base: Vec<u8> = (0..base_len).map(|_| (rng.next() % 4) as u8).collect();
            let mut new = base.clone();
            new.resize(rng.below(600), 3);
            for _ in 0..rng.below(6) {
                if new.is_empty() {
                    break;
                }
                let (a, b) = (rng.below(new.len()), rng.below(new.len()));
                let (a, b) = (a.min(b), a.max(b));
                match rng.below(3) {
                    0 => new[a..b].iter_mut().for_each(|x| *x = rng.next() as u8),
                    1 => {
                        let to = (a + rng.below(9)).min(new.len() - (b - a));
                        new.copy_within(a..b, to)
                    }
                    _ => new.copy_within((a + rng.below(9)).min(b)..b, a),
                }
            }
            let _ = case;
            round_trip(&base, &new);
        }
    }

    #[test]
    fn an_unchanged_node_is_an_empty_delta_and_a_rewritten_one_is_whole() {
        let base = vec![5u8; 300];
        assert_eq!(round_trip(&base, &base), Some(1));
        assert_eq!(round_trip(&base, &base[..100]), Some(1));
        let other: Vec<u8> = (0..300u32).map(|i| (i * 7 + 1) as u8).collect();
        assert_eq!(round_trip(&base, &other), None);
    }

    #[test]
    fn a_delta_that_does_not_fit_its_base_is_refused() {
        let base = vec![1u8; 100];
        let mut new = base.clone();
        new[50..70].fill(9);
        new.extend_from_slice(&[4; 40]);
        let mut enc = Vec::new();
        assert!(encode(&base, &new, &mut enc));
        let mut out = vec![0u8; new.len()];
        assert!(apply(&base[..90], &enc, &mut out).is_err(), "the tail past a shorter base is undefined");
        assert!(apply(&base, &enc[..enc.len() - 1], &mut out).is_err());
        let mut short = vec![0u8; 60];
        assert!(apply(&base, &enc, &mut short).is_err());
    }
}
