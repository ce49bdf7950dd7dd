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
    /// trigger, at least `LOG_BYTES_MIN` of log was written since the last checkpoint, and
    /// either the log holds the excess, or `drained` (the commit's relocation found nothing
    /// left to move: the nodes lie before where a cut would end each file) and the class
    /// files' unused blocks hold at least half of it. A checkpoint then lets the blocks the
    /// relocation left go and cuts the tails. Without this, a store that freed most of its
    /// nodes kept its files through any number of small commits (an outside tester's stayed
    /// at 10.4x its live bytes through 200). The half keeps the rule away from statement-sized
    /// commits, whose excess is mostly log (see the module comment).
    pub(crate) fn wants_checkpoint(&self, log_len: u64, drained: bool) -> bool {
        if !self.over_limit() || log_len < LOG_BYTES_MIN {
            return false;
        }
        let excess = self.directory().saturating_sub(self.limit());
        let unused_blocks = self.class_files.saturating_sub(self.live);
        self.log_file >= excess || (drained && unused_blocks >= excess / 2)
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
        assert!(!estimate(7 * mib, mib, 6 * mib).wants_checkpoint(mib, true), "8 MiB for 6 is within");
        assert!(estimate(7 * mib, 4 * mib, 6 * mib).wants_checkpoint(mib, false));
        assert!(!estimate(7 * mib, 4 * mib, 6 * mib).wants_checkpoint(LOG_BYTES_MIN - 1, true), "too little log yet");
        // Class files past the trigger on their own: a checkpoint only once relocation has
        // nothing left to move (then it lets the moved nodes' old blocks go, and the tails are
        // cut), and only when their unused blocks are half the excess or more.
        assert!(!estimate(12 * mib, mib, 6 * mib).wants_checkpoint(mib, false));
        assert!(!estimate(12 * mib, 3 * mib, 6 * mib).wants_checkpoint(3 * mib, false));
        assert!(estimate(12 * mib, mib, 6 * mib).wants_checkpoint(mib, true));
        assert!(estimate(12 * mib, 3 * mib, 6 * mib).wants_checkpoint(3 * mib, true));
        // Statement-sized commits at 100 k rows (examples/statement_footprint): the excess is
        // the log's, and the class files' unused blocks are far from half of it.
        let statement =
            Estimate { class_files: 5_570_000, log_file: 11_520_000, other_files: 190_000, live: 3_620_000 };
        assert!(!statement.wants_checkpoint(11_520_000, true));
    }

    #[test]
    fn a_directory_that_may_not_be_over_is_over_for_no_live_bytes() {
        let kib = 1 << 10;
        for directory in [0, 100 * kib, 1433 * kib, 1434 * kib, 1500 * kib, 3 << 20] {
            let at = |live| Estimate { class_files: directory, log_file: 0, other_files: 0, live };
            let may = at(0).may_be_over();
            for live in (0..64).map(|i| i * 32 * kib) {
                assert!(may || !at(live).over_limit(), "{directory} B over for {live} live");
                assert!(may || !at(live).wants_checkpoint(u64::MAX, true), "{directory} B wants a checkpoint");
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
        assert!(!estimate(2 * mib, 4 * mib, mib / 2).wants_checkpoint(4 * mib, true), "nor checkpoints for its ratio");
    }
}
