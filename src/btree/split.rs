//! Split arithmetic: where a page that no longer fits is cut, and the separator between the
//! halves. Pure functions over entry sizes from the byte-accounting function, so every
//! caller (leaf split, internal split, rebalancing after delete) agrees on what fits.

use crate::error::Result;

/// Where the entry that caused the split sits, for append-aware splitting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Edge {
    /// The new entry is the last of the rightmost page: a sequential load. Keep the left page
    /// full, so a sorted load leaves full pages (LMDB's MDB_APPEND, SQLite's balance_quick).
    Right,
    /// The new entry is the first of the leftmost page: a descending load.
    Left,
    /// Anywhere else: halve by bytes.
    Middle,
}

/// Whether a page that lost an entry, now using `used_bytes` of `capacity`, is rebalanced
/// (merged with a sibling, or evened out with it). A third, as redb: well below the half a
/// split leaves, so a page split by an insert is not merged again by the next remove. Every
/// remove path asks this: the in-place remove edits its leaf only when this says no.
pub(crate) fn below_merge_threshold(used_bytes: usize, capacity: usize) -> bool {
    used_bytes < capacity / 3
}

/// Room a shift leaves in the two pages together: an eighth of a page, so the next inserts
/// do not shift again at once (a quarter page: 45.6 bytes per random 36-byte entry; an
/// eighth: 44.3, for more frequent shifts; btree_bench shows both).
pub(crate) fn shift_slack(capacity: usize) -> usize {
    capacity / 8
}

/// THE shift rule: whether a full leaf whose cells (the new one among them) take
/// `total_bytes` shares them with a sibling using `sibling_bytes` (a shift: no new page, and
/// pages stay fuller on random inserts, B*-tree style) rather than splitting. The cut then
/// comes from [`shift_cut`], which finds none when no cut fits both pages. The planner
/// (tree/planner.rs) asks this and cuts with that for both executors, the in-place one
/// (tree/overflow.rs) and the copy one (tree/insert.rs), so they shift in the same cases and
/// leave the same pages.
pub(crate) fn shift_fits(total_bytes: usize, sibling_bytes: usize, capacity: usize) -> bool {
    total_bytes + sibling_bytes <= 2 * capacity - shift_slack(capacity)
}

/// Where to cut a leaf's `n` cells (of `total` bytes; `size(j)` is cell j's) so that their
/// tail (`right`) or head goes to a sibling using `used` bytes: the cut whose two pages are
/// closest in size, both within `capacity`, found measuring only the cells it passes. Returns
/// k, the first cell of the right-hand page, or None when no cut fits.
pub(crate) fn shift_cut(
    n: usize,
    size: impl Fn(usize) -> Result<usize>,
    total: usize,
    used: usize,
    capacity: usize,
    right: bool,
) -> Result<Option<usize>> {
    let mut moved = 0;
    let mut best: Option<(usize, usize)> = None;
    for step in 0..n.saturating_sub(1) {
        let j = if right { n - 1 - step } else { step };
        moved += size(j)?;
        let (here, there) = (total.saturating_sub(moved), used + moved);
        if there > capacity {
            break;
        }
        if here <= capacity {
            let imbalance = here.abs_diff(there);
            if best.is_some_and(|(_, b)| imbalance >= b) {
                break; // past the balance point: further cuts are only worse
            }
            best = Some((if right { j } else { j + 1 }, imbalance));
        }
    }
    Ok(best.map(|(k, _)| k))
}

/// Where a split cuts `n` cells (of `total` bytes) into the leaf's part and a new page's, for
/// `edge`, measuring only the cells it passes: at the right edge the leaf stays full (a
/// sequential load leaves full pages), at the left edge the new page does; elsewhere the
/// halves are closest in size. The planner splits with this for both executors.
pub(crate) fn split_cut(
    n: usize,
    size: impl Fn(usize) -> Result<usize>,
    total: usize,
    capacity: usize,
    edge: Edge,
) -> Result<Option<usize>> {
    match edge {
        Edge::Middle => shift_cut(n, size, total, 0, capacity, true),
        Edge::Right => {
            let mut moved = 0;
            for j in (1..n).rev() {
                moved += size(j)?;
                if moved > capacity {
                    break;
                }
                if total - moved <= capacity {
                    return Ok(Some(j));
                }
            }
            Ok(None)
        }
        Edge::Left => {
            let mut kept = 0;
            for j in 0..n.saturating_sub(1) {
                kept += size(j)?;
                if kept > capacity {
                    break;
                }
                if total - kept <= capacity {
                    return Ok(Some(j + 1));
                }
            }
            Ok(None)
        }
    }
}

/// The cuts that even out two pages' entries (`sizes`, in order) so that both fit
/// `capacity`, the most even first. A cut k leaves entries ..k on the left; the right page
/// gets k.. (leaves), or k + 1.. when entry k moves up to the parent as their separator
/// (internal pages: `moves_up`). Both kinds of page even out by this one rule.
pub(crate) fn even_cuts(sizes: &[usize], capacity: usize, moves_up: bool) -> Vec<usize> {
    let total: usize = sizes.iter().sum();
    // The cuts that fit, in order, with their imbalance (left - right grows with k).
    let mut fitting: Vec<(usize, usize)> = Vec::new();
    let mut left = 0;
    for (k, &size) in sizes.iter().enumerate() {
        let right = total - left - if moves_up { size } else { 0 };
        let both_sides = k > 0 && (!moves_up || k + 1 < sizes.len());
        if both_sides && left <= capacity && right <= capacity {
            fitting.push((k, left.abs_diff(right)));
        }
        left += size;
        if left > capacity {
            break;
        }
    }
    // The imbalance falls to its least and rises again: from there outwards, the more even
    // side first (the lower cut on a tie), with no sort.
    let Some(best) = (0..fitting.len()).min_by_key(|&i| fitting[i].1) else { return Vec::new() };
    let mut cuts = Vec::with_capacity(fitting.len());
    cuts.push(fitting[best].0);
    let (mut below, mut above) = (best, best + 1);
    while below > 0 || above < fitting.len() {
        let take_below = below > 0 && (above == fitting.len() || fitting[below - 1].1 <= fitting[above].1);
        if take_below {
            below -= 1;
            cuts.push(fitting[below].0);
        } else {
            cuts.push(fitting[above].0);
            above += 1;
        }
    }
    cuts
}

/// Split an internal page's entries: returns m, the entry whose separator moves up to the
/// parent (its child becomes the right page's leftmost child). Left keeps entries ..m, right
/// gets m+1.. (plus the leftmost pointer, which takes no entry bytes).
pub(crate) fn internal_split_point(sizes: &[usize], capacity: usize, edge: Edge) -> usize {
    let n = sizes.len();
    assert!(n >= 3, "an internal split needs three entries");
    let total: usize = sizes.iter().sum();
    let mut left = sizes[0];
    let mut candidates = Vec::new();
    for (m, &size) in sizes.iter().enumerate().take(n - 1).skip(1) {
        let right = total - left - size;
        if left <= capacity && right <= capacity {
            candidates.push((m, left.abs_diff(right)));
        }
        left += size;
        if left > capacity {
            break;
        }
    }
    let chosen = match edge {
        Edge::Right => candidates.last().map(|c| c.0),
        Edge::Left => candidates.first().map(|c| c.0),
        Edge::Middle => candidates.iter().min_by_key(|c| c.1).map(|c| c.0),
    };
    chosen.expect("separators of at most a quarter page always split into two fitting halves")
}

/// The shortest prefix of `right` that is still greater than `left` (bytewise order, `left` <
/// `right`): every key of the left page is below it and every key of the right page is at or
/// above it. Shorter separators mean more of them per internal page.
pub(crate) fn shortest_separator<'a>(left: &[u8], right: &'a [u8]) -> &'a [u8] {
    debug_assert!(left < right);
    let common = left.iter().zip(right).take_while(|(a, b)| a == b).count();
    &right[..(common + 1).min(right.len())]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_leaf(sizes: &[usize], cap: usize, edge: Edge) -> usize {
        let total = sizes.iter().sum();
        let k = split_cut(sizes.len(), |j| Ok(sizes[j]), total, cap, edge).unwrap().expect("a cut");
        let left: usize = sizes[..k].iter().sum();
        let right: usize = sizes[k..].iter().sum();
        assert!(k > 0 && k < sizes.len() && left <= cap && right <= cap, "{sizes:?} cut at {k}");
        k
    }

    #[test]
    fn kizunas_skew_fifteen_tiny_keys_then_maximum_keys() {
        // The count-midpoint split put the 15 tiny entries left and all the big ones right,
        // and the right half did not fit. By bytes it always does.
        let cap = 4080;
        let big = cap / 4;
        for n_big in 1..=4 {
            let mut sizes = vec![8usize; 15];
            sizes.extend(std::iter::repeat_n(big, n_big));
            if sizes.iter().sum::<usize>() <= cap {
                continue; // would not need a split
            }
            for edge in [Edge::Middle, Edge::Right, Edge::Left] {
                check_leaf(&sizes, cap, edge);
            }
        }
    }

    #[test]
    fn every_mix_of_sizes_splits_into_two_fitting_halves() {
        let cap = 496;
        let mut rng = crate::test_rng::TestRng::new(0x2545_F491_4F6C_DD1D);
        for _ in 0..20000 {
            let mut sizes = Vec::new();
            while sizes.iter().sum::<usize>() <= cap {
                sizes.push(7 + rng.below(cap as u64 / 4 - 6) as usize);
            }
            for edge in [Edge::Middle, Edge::Right, Edge::Left] {
                check_leaf(&sizes, cap, edge);
            }
            if sizes.len() >= 3 {
                let m = internal_split_point(&sizes, cap, Edge::Middle);
                assert!(sizes[..m].iter().sum::<usize>() <= cap && sizes[m + 1..].iter().sum::<usize>() <= cap);
            }
        }
    }

    #[test]
    fn two_pages_of_entries_split_whenever_the_largest_entry_fits_the_slack() {
        // A shift into a sibling evens out up to 2 x capacity - max(largest entry, slack):
        // any total that leaves the largest entry's worth of room must split.
        let cap = 496;
        let mut rng = crate::test_rng::TestRng::new(0x9E37_79B9_7F4A_7C15);
        for _ in 0..20000 {
            let mut sizes: Vec<usize> = Vec::new();
            loop {
                let next = 3 + rng.below(cap as u64 / 4 - 2) as usize;
                let largest = sizes.iter().copied().max().unwrap_or(0).max(next);
                if sizes.iter().sum::<usize>() + next > 2 * cap - largest {
                    break;
                }
                sizes.push(next);
            }
            if sizes.len() >= 2 && sizes.iter().sum::<usize>() > cap {
                check_leaf(&sizes, cap, Edge::Middle);
            }
        }
    }

    #[test]
    fn even_cuts_fit_both_pages_most_even_first() {
        let cap = 496;
        let mut rng = crate::test_rng::TestRng::new(0x5eed_ca75);
        for _ in 0..5000 {
            let sizes: Vec<usize> =
                (0..3 + rng.below(30)).map(|_| 7 + rng.below(cap as u64 / 4 - 6) as usize).collect();
            for moves_up in [false, true] {
                let gap = usize::from(moves_up);
                let sides = |k: usize| (sizes[..k].iter().sum::<usize>(), sizes[k + gap..].iter().sum::<usize>());
                let cuts = even_cuts(&sizes, cap, moves_up);
                let last = sizes.len() - 1 - gap;
                for &k in &cuts {
                    let (l, r) = sides(k);
                    assert!((1..=last).contains(&k) && l <= cap && r <= cap, "{sizes:?}: cut {k}");
                }
                // Every fitting cut, the most even first (the lower on a tie).
                let mut want: Vec<(usize, usize)> = (1..=last)
                    .filter(|&k| sides(k).0 <= cap && sides(k).1 <= cap)
                    .map(|k| (sides(k).0.abs_diff(sides(k).1), k))
                    .collect();
                want.sort_unstable();
                assert_eq!(cuts, want.iter().map(|w| w.1).collect::<Vec<_>>(), "{sizes:?} moves_up {moves_up}");
                if sizes.iter().sum::<usize>() <= 2 * cap - cap / 4 - if moves_up { cap / 4 } else { 0 } {
                    assert!(!cuts.is_empty(), "{sizes:?} moves_up {moves_up}");
                }
            }
        }
    }

    #[test]
    fn append_split_keeps_the_left_page_full() {
        let sizes = vec![40usize; 103]; // 102 fit in 4080 bytes
        assert_eq!(check_leaf(&sizes, 4080, Edge::Right), 102);
        assert_eq!(check_leaf(&sizes, 4080, Edge::Left), 1);
        let mid = check_leaf(&sizes, 4080, Edge::Middle);
        assert!((51..=52).contains(&mid));
    }

    #[test]
    fn separators_are_the_shortest_distinguishing_prefix() {
        assert_eq!(shortest_separator(b"apple", b"banana"), b"b");
        assert_eq!(shortest_separator(b"key000123", b"key000124"), b"key000124");
        assert_eq!(shortest_separator(b"abc", b"abcd"), b"abcd");
        assert_eq!(shortest_separator(b"", b"a"), b"a");
        assert_eq!(shortest_separator(b"ab", b"b"), b"b");
    }
}
