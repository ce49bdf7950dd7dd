//! Keeping a store's directory near its live bytes between checkpoints, without the host
//! calling anything (issue 18 item 1: at most 1.5x once the last commit is durable).
//!
//! Between checkpoints the directory holds, besides the live blocks, the log's frames, the
//! blocks freed since (they become free at the next checkpoint and its tail cut), and the
//! checkpoint pieces. A commit that finds the directory past [`TRIGGER_RATIO`] of the live
//! bytes checkpoints, as a commit whose log passed `checkpoint_log_bytes` does: the log starts
//! over and the class files' free tails are cut. Two rules keep that bounded:
//! - at most once per [`LOG_BYTES_MIN`] of log written, and only when the log itself holds
//!   the excess, or when the commit's relocation has nothing left to move and the class
//!   files' unused blocks hold half the excess or more (a store that freed most of its nodes:
//!   the checkpoint lets the moved nodes' old blocks go and the tails are cut). A store whose
//!   excess is scattered free blocks beside a larger log is left to its log-size checkpoints,
//!   its close and compaction: checkpointing those too (once per half the live bytes of log)
//!   took a Kizuna-like load (100 k random rows, a STRICT commit per 500) from 259 to 906
//!   bytes written per row, each checkpoint flushing most of the store, and still left it at
//!   2.4x;
//! - or, sooner, when relocation has nothing left to move and the blocks past where a cut
//!   would end the class files (freed, or held until a checkpoint) are at least
//!   [`DRAINED_GAIN`] times the live bytes, once per [`DRAINED_COMMITS_MIN`] commits: a store
//!   that freed most of its nodes and then commits little at a time (one small node a
//!   commit logs ~100 bytes, so `LOG_BYTES_MIN` took ~2,600 commits, an outside tester's
//!   store staying at 10.6x all along). The gain tells it from a store whose churn keeps
//!   freed and held blocks near its tails (XTree's steady bucket churn: 0.65-0.8x its live
//!   bytes past the cut lines, at every commit): checkpointing that every 32 commits turned
//!   the versions it checkpointed into held blocks, freed at the next checkpoint as holes
//!   (27 % fragmentation against the seed's < 10 %);
//! - not under EVENTUAL, whose commits are durable only at a checkpoint (or a sync): its
//!   footprint holds from there. A checkpoint inside a bulk load's one commit writes every
//!   page twice (100 k random inserts: the commit 249 ns an insert against 103, LMDB 14);
//! - the log space a checkpoint keeps for reuse fits what the ratio leaves ([`log_room`]),
//!   so the checkpoint does not itself leave the store past the trigger.
//!
//! The figures are estimates a commit can afford: the class files' and log's lengths, the
//! other files' bytes measured at the last checkpoint, and as live bytes the blocks allocated
//! less those waiting in the free queues (exact but for versions kept for snapshots).

use super::core::Core;

/// A commit checkpoints when the directory passes this multiple of the live bytes: below the
/// promised 1.5, so that the commits until the next check and the estimates' slack fit.
pub(crate) const TRIGGER_RATIO: f64 = 1.4;

/// Log bytes written since the last checkpoint before the ratio may trigger another.
pub(crate) const LOG_BYTES_MIN: u64 = 256 << 10;

/// A drained store checkpoints once the blocks past its cut lines are this many times its
/// live bytes (see the module comment): the checkpoint then takes the directory to a third
/// or less of its size.
pub(crate) const DRAINED_GAIN: u64 = 2;

/// ... and at most once per this many commits, doubled after each such checkpoint that gave
/// back less than half what lay past the lines (a node that cannot move, one committed before
/// its first publish say, may hold a tail) up to `DRAINED_COMMITS_MAX`: see
/// [`next_drained_interval`].
pub(crate) const DRAINED_COMMITS_MIN: u64 = 32;
pub(crate) const DRAINED_COMMITS_MAX: u64 = 1 << 16;

/// The commits a drained store waits before its next checkpoint for the drained rule, after
/// one that had `expected` bytes past the cut lines and gave `given` back.
pub(crate) fn next_drained_interval(interval: u64, expected: u64, given: u64) -> u64 {
    if given.saturating_mul(2) >= expected {
        DRAINED_COMMITS_MIN
    } else {
        interval.saturating_mul(2).clamp(DRAINED_COMMITS_MIN, DRAINED_COMMITS_MAX)
    }
}

/// Why a commit's checkpoint is due for the footprint's sake (see `wants_checkpoint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// The log holds the excess, or a drained store's unused blocks do, and enough log came.
    Log,
    /// A drained store's blocks past its cut lines, which the checkpoint should give back.
    Drained { expected: u64 },
}

/// A commit whose relocation found nothing left to move (no node lies past the line where a
/// cut would end its class file), and what a checkpoint could then give back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Drained {
    pub commits_since_checkpoint: u64,
    /// Commits to wait since the last checkpoint (`next_drained_interval`).
    pub commits_min: u64,
    /// Bytes of the blocks past the cut lines: free, or freed and held until a checkpoint.
    pub past_cut_lines: u64,
}

/// Below this many live bytes the ratio is not looked at: the files every store has (meta,
/// reader table, a checkpoint, a cut's 64 KiB granule per class) are most of the directory,
/// whatever a checkpoint does.
pub(crate) const LIVE_BYTES_MIN: u64 = 1 << 20;

/// What a commit knows of the directory's size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Estimate {
    pub class_files: u64,
    pub log_file: u64,
    /// Checkpoint pieces, meta and reader table, as of the last checkpoint.
    pub other_files: u64,
    pub live: u64,
}

impl Estimate {
    fn directory(&self) -> u64 {
        self.class_files + self.log_file + self.other_files
    }

    fn limit(&self) -> u64 {
        (self.live as f64 * TRIGGER_RATIO) as u64
    }

    /// False when the directory is too small to be past the trigger whatever the live bytes:
    /// the ratio counts from `LIVE_BYTES_MIN` live bytes, whose trigger is already more than
    /// the directory. `live` need not be known for this.
    pub(crate) fn may_be_over(&self) -> bool {
        self.directory() as f64 > LIVE_BYTES_MIN as f64 * TRIGGER_RATIO
    }

    /// True when the directory is past the trigger (for a store big enough to look at).
    pub(crate) fn over_limit(&self) -> bool {
        self.live >= LIVE_BYTES_MIN && self.directory() > self.limit()
    }

    /// True when a checkpoint is due for the footprint's sake: the directory is past the
    /// trigger, and either at least `LOG_BYTES_MIN` of log was written since the last
    /// checkpoint and the log holds the excess, or the store is `drained` (see [`Drained`])
    /// and either that much log came and the class files' unused blocks hold half the excess
    /// or more, or `commits_min` commits came and the blocks past the cut lines are
    /// `DRAINED_GAIN` times the live bytes. A checkpoint then lets the blocks the relocation
    /// left go and cuts the tails. The half keeps the rule away from statement-sized commits,
    /// whose excess is mostly log (see the module comment).
    pub(crate) fn wants_checkpoint(&self, log_len: u64, drained: Option<Drained>) -> Option<Due> {
        if !self.over_limit() {
            return None;
        }
        let excess = self.directory().saturating_sub(self.limit());
        let unused_blocks = self.class_files.saturating_sub(self.live);
        if log_len >= LOG_BYTES_MIN && (self.log_file >= excess || (drained.is_some() && unused_blocks >= excess / 2)) {
            return Some(Due::Log);
        }
        let d = drained?;
        (d.commits_since_checkpoint >= d.commits_min && d.past_cut_lines >= DRAINED_GAIN * self.live)
            .then_some(Due::Drained { expected: d.past_cut_lines })
    }
}

/// Log bytes a checkpoint may keep for reuse: what the trigger leaves beside the class files
/// and other files (the checkpoint's pieces replace those of the last one, roughly).
pub(crate) fn log_room(e: &Estimate) -> u64 {
    if e.live < LIVE_BYTES_MIN {
        return u64::MAX;
    }
    e.limit().saturating_sub(e.class_files + e.other_files)
}

impl Core {
    /// Bytes of the blocks the nodes need: allocated, less those waiting in free queues.
    pub(crate) fn live_estimate(&self) -> u64 {
        (0..self.space.classes().count() as u8)
            .map(|class| {
                let blocks = self.space.allocated_blocks(class).saturating_sub(self.queued_blocks[class as usize]);
                blocks * u64::from(self.space.capacity(class))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(class_files: u64, log_file: u64, live: u64) -> Estimate {
        Estimate { class_files, log_file, other_files: 16 << 10, live }
    }

    #[test]
    fn a_checkpoint_is_due_past_the_ratio_once_enough_log_was_written() {
        let mib = 1 << 20;
        assert!(estimate(7 * mib, mib, 6 * mib).wants_checkpoint(mib, drained(0)).is_none(), "8 MiB for 6 is within");
        assert!(estimate(7 * mib, 4 * mib, 6 * mib).wants_checkpoint(mib, None).is_some());
        assert!(
            estimate(7 * mib, 4 * mib, 6 * mib).wants_checkpoint(LOG_BYTES_MIN - 1, drained(0)).is_none(),
            "too little log yet"
        );
        // Class files past the trigger on their own: a checkpoint only once relocation has
        // nothing left to move (then it lets the moved nodes' old blocks go, and the tails are
        // cut), and only when their unused blocks are half the excess or more.
        assert!(estimate(12 * mib, mib, 6 * mib).wants_checkpoint(mib, None).is_none());
        assert!(estimate(12 * mib, 3 * mib, 6 * mib).wants_checkpoint(3 * mib, None).is_none());
        assert!(estimate(12 * mib, mib, 6 * mib).wants_checkpoint(mib, drained(0)).is_some());
        assert!(estimate(12 * mib, 3 * mib, 6 * mib).wants_checkpoint(3 * mib, drained(0)).is_some());
        // Statement-sized commits at 100 k rows (examples/statement_footprint): the excess is
        // the log's, and the class files' unused blocks are far from half of it.
        let statement =
            Estimate { class_files: 5_570_000, log_file: 11_520_000, other_files: 190_000, live: 3_620_000 };
        assert!(statement.wants_checkpoint(11_520_000, drained(0)).is_none());
    }

    /// Drained, with nothing past the cut lines and few commits since the last checkpoint.
    fn drained(past_cut_lines: u64) -> Option<Drained> {
        Some(Drained { commits_since_checkpoint: 1, commits_min: DRAINED_COMMITS_MIN, past_cut_lines })
    }

    #[test]
    fn a_drained_store_checkpoints_after_a_few_commits_when_that_gives_back_twice_its_nodes() {
        let mib = 1 << 20;
        // An outside tester's store: 90 % of its nodes freed, then one 16-byte node a commit.
        let emptied = estimate(16 * mib, mib / 8, 3 * mib / 2);
        let past = |commits, past| {
            Some(Drained { commits_since_checkpoint: commits, commits_min: DRAINED_COMMITS_MIN, past_cut_lines: past })
        };
        assert!(emptied.wants_checkpoint(mib / 8, past(DRAINED_COMMITS_MIN, 14 * mib)).is_some());
        assert!(emptied.wants_checkpoint(mib / 8, past(DRAINED_COMMITS_MIN - 1, 14 * mib)).is_none(), "too soon");
        assert!(emptied.wants_checkpoint(mib / 8, None).is_none(), "relocation still moving nodes");
        // XTree's steady churn: 2.5 MiB of class files for 1 MiB live, 0.7 MiB past the lines.
        let churn = estimate(5 * mib / 2, mib / 8, mib);
        assert!(churn.wants_checkpoint(mib / 8, past(1000, 7 * mib / 10)).is_none());
        assert_eq!(
            churn.wants_checkpoint(mib / 8, past(1000, 2 * mib)),
            Some(Due::Drained { expected: 2 * mib }),
            "twice the live bytes"
        );
        // A checkpoint that gave back less than half of it (a node that cannot move holds the
        // tail) doubles the wait, up to a bound; one that gave it back starts over.
        let (mut wait, mut waits) = (DRAINED_COMMITS_MIN, Vec::new());
        for _ in 0..20 {
            wait = next_drained_interval(wait, 14 * mib, mib);
            waits.push(wait);
        }
        assert_eq!(waits[..3], [64, 128, 256]);
        assert_eq!(*waits.last().unwrap(), DRAINED_COMMITS_MAX);
        assert_eq!(next_drained_interval(wait, 14 * mib, 7 * mib), DRAINED_COMMITS_MIN);
        let late = Some(Drained { commits_since_checkpoint: 100, commits_min: 128, past_cut_lines: 14 * mib });
        assert!(emptied.wants_checkpoint(mib / 8, late).is_none(), "waiting longer after a vain one");
    }

    #[test]
    fn a_directory_that_may_not_be_over_is_over_for_no_live_bytes() {
        let kib = 1 << 10;
        for directory in [0, 100 * kib, 1433 * kib, 1434 * kib, 1500 * kib, 3 << 20] {
            let at = |live| Estimate { class_files: directory, log_file: 0, other_files: 0, live };
            let may = at(0).may_be_over();
            for live in (0..64).map(|i| i * 32 * kib) {
                assert!(may || !at(live).over_limit(), "{directory} B over for {live} live");
                assert!(
                    may || at(live)
                        .wants_checkpoint(
                            u64::MAX,
                            Some(Drained {
                                commits_since_checkpoint: u64::MAX,
                                commits_min: DRAINED_COMMITS_MIN,
                                past_cut_lines: u64::MAX
                            })
                        )
                        .is_none(),
                    "{directory} B wants a checkpoint"
                );
            }
        }
        assert!(estimate(2 << 20, 0, 0).may_be_over());
        assert!(!estimate(1 << 20, 0, 0).may_be_over());
    }

    #[test]
    fn the_log_kept_fits_beside_the_class_files() {
        let mib = 1 << 20;
        let room = log_room(&estimate(7 * mib, 0, 6 * mib));
        assert!(7 * mib + room + (16 << 10) <= (6.0 * 1.4 * mib as f64) as u64 + 1);
        assert_eq!(log_room(&estimate(9 * mib, 0, 6 * mib)), 0, "no room past the trigger");
        assert_eq!(log_room(&estimate(2 * mib, 0, mib / 2)), u64::MAX, "a tiny store keeps its log");
        assert!(
            estimate(2 * mib, 4 * mib, mib / 2).wants_checkpoint(4 * mib, drained(0)).is_none(),
            "nor checkpoints for its ratio"
        );
    }
}
