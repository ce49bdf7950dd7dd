//! `pcore check DIR`: the whole integrity check, never changing a file. Each step prints
//! what it checked; each problem names the file and offset, or the node or page.

use crate::util::{missing_store, names_live_node, open_existing, root_name};
use crate::Outcome;
use pcore::btree::{list_named_roots, list_trees, BTree};
use pcore::store::{inspect_files, FileReport, MetaSlotState, Store, StoreOptions};
use std::path::Path;

/// Payload mismatches listed before the check stops counting them one by one.
const MISMATCHES_LISTED: usize = 20;

/// What the check found, step by step: printed as it goes, or kept quiet (for the crash
/// matrix, which only wants the problems).
pub struct Report {
    verbose: bool,
    pub problems: Vec<String>,
}

impl Report {
    fn ok(&self, step: &str, what: impl AsRef<str>) {
        if self.verbose {
            println!("  ok       {step:<13} {}", what.as_ref());
        }
    }

    /// A finding that is not damage: printed (always, even when the rest is quiet), not
    /// counted as a problem.
    fn note(&self, step: &str, what: impl AsRef<str>) {
        println!("  note     {step:<13} {}", what.as_ref());
    }

    fn problem(&mut self, step: &str, what: impl AsRef<str>) {
        let line = format!("{step:<13} {}", what.as_ref());
        if self.verbose {
            println!("  PROBLEM  {line}");
        }
        self.problems.push(line);
    }
}

/// The problems `pcore check` would report for the store in `dir`, printing nothing.
pub fn problems(dir: &Path) -> Vec<String> {
    let mut r = Report { verbose: false, problems: Vec::new() };
    match open_existing(dir, true) {
        Ok(store) => check_store(dir, store, &mut r),
        Err(e) => r.problem("files", e),
    }
    r.problems
}

pub fn run(dir: &Path) -> Result<Outcome, String> {
    // A missing directory or one that holds no store is the user's error, not damage: not
    // checked (exit 2), so a script can tell a mistyped path from a damaged store.
    let mut r = Report { verbose: true, problems: Vec::new() };
    match missing_store(dir) {
        Some((why, false)) => {
            eprintln!("pcore: {why}");
            return Ok(Outcome::NotChecked);
        }
        Some((why, true)) => {
            println!("pcore check {}", dir.display());
            r.problem("files", why);
            println!("1 problem found");
            return Ok(Outcome::Failed);
        }
        None => println!("pcore check {}", dir.display()),
    }
    // The store first: a read-only open reads one commit and, through the reader table, keeps
    // a writer from reusing its blocks, so every check below is of that commit, whatever a
    // writer does meanwhile (a snapshot). A read-only open is busy when every reader slot is
    // taken, or when a writer's checkpoints kept overtaking it: nothing is known of the store
    // then, damaged or not.
    let opts = StoreOptions { read_only: true, create: false, ..StoreOptions::default() };
    match Store::open(dir, &opts) {
        Ok(store) => check_store(dir, store, &mut r),
        Err(pcore::Error::Busy(why)) => {
            // Every reader slot taken, or a writer's checkpoints overtaking the open: the
            // message says which.
            println!("not checked: {why}");
            return Ok(Outcome::NotChecked);
        }
        // A store of a format this build does not read is not damaged: a newer pcore checks it.
        Err(pcore::Error::VersionMismatch(why)) => {
            println!("not checked: {why}");
            return Ok(Outcome::NotChecked);
        }
        Err(e) => r.problem("files", format!("{}: {e}", dir.display())),
    }
    let count = r.problems.len();
    if count == 0 {
        println!("clean: nothing damaged, nothing lost");
        Ok(Outcome::Done)
    } else {
        println!("{count} problem{} found", if count == 1 { "" } else { "s" });
        Ok(Outcome::Failed)
    }
}

/// Looks at the files again while a writer is visibly moving them (a checkpoint replaced
/// them, the log grew): a live writer's work in flight is not damage.
const FILE_LOOKS: u32 = 6;

/// The meta, checkpoint and log as `inspect_files` finds them, looked at until two looks in
/// a row agree (or `FILE_LOOKS` looks): on a store a writer is committing to, a checkpoint
/// may replace the files during a look, and the log's end may be a frame being appended.
/// (`pcore stat` looks the same way: a look that met a log a checkpoint had just removed
/// failed it beside a writer, about one run in fifty for an outside tester.)
pub fn settled_files(dir: &Path) -> pcore::Result<FileReport> {
    let fingerprint = |f: &FileReport| (f.generation, f.log.bytes, f.log.valid_bytes);
    let mut last = inspect_files(dir);
    for _ in 1..FILE_LOOKS {
        let moving = match &last {
            Ok(f) => f.log.torn_tail_bytes() > 0,
            Err(_) => true,
        };
        if !moving {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(40));
        let next = inspect_files(dir);
        let settled = matches!((&last, &next), (Ok(a), Ok(b)) if fingerprint(a) == fingerprint(b));
        last = next;
        if settled {
            break;
        }
    }
    last
}

/// True when the meta file changes within a few looks: a writer is checkpointing.
fn writer_replacing_files(dir: &Path) -> bool {
    let meta = || std::fs::read(dir.join("meta")).ok();
    let first = meta();
    (0..FILE_LOOKS).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(10));
        meta() != first
    })
}

/// Checks the store in `dir`, opened read-only as `store` (the commit every step checks).
fn check_store(dir: &Path, store: Store, r: &mut Report) {
    // Meta, checkpoint and log: what an open reads first.
    let files = match settled_files(dir) {
        Ok(f) => f,
        // A writer that checkpoints at nearly every commit replaces the files faster than a
        // look reads them (outsider15: a log "missing" in 8 of 965 checks beside one). The
        // open above read one commit whole: the steps below check it.
        Err(e) if writer_replacing_files(dir) => {
            r.ok("files", format!("not looked at: a writer replaced them at every look ({e})"));
            return check_opened(store, r);
        }
        Err(e) => return r.problem("files", e.to_string()),
    };
    for (offset, slot) in &files.meta_slots {
        match slot {
            MetaSlotState::Damaged => r.problem(
                "meta",
                format!("meta at offset {offset}: slot checksum mismatch (a torn write or damage; the other slot is in use)"),
            ),
            MetaSlotState::Valid { sequence, .. } => r.ok("meta", format!("slot at offset {offset}: sequence {sequence}")),
            MetaSlotState::Unused => r.ok("meta", format!("slot at offset {offset}: not written yet")),
        }
    }
    match &files.checkpoint {
        Some(c) => r.ok(
            "checkpoint",
            format!(
                "{} ({} piece{}, {} bytes): epoch {}, {} live nodes, {} roots, checksums match",
                c.file,
                c.pieces,
                if c.pieces == 1 { "" } else { "s" },
                c.bytes,
                c.epoch,
                c.live_nodes,
                c.roots
            ),
        ),
        None => r.ok("checkpoint", "none yet (the log holds every commit)"),
    }
    let log = &files.log;
    // A commit cut short by a crash or power cut leaves such a tail: the ordinary outcome of a
    // cut (its commit was never acknowledged as durable), not damage. Named, not a problem.
    if log.torn_tail_bytes() > 0 {
        r.note(
            "log",
            format!(
                "{} at offset {}: {} bytes that are not a whole commit frame (a commit cut short by a crash or \
                 power cut); the next writable open drops them",
                log.file,
                log.valid_bytes,
                log.torn_tail_bytes()
            ),
        );
    }
    r.ok("log", format!("{}: {} frames, last epoch {}, checksums match", log.file, log.frames, log.last_epoch));
    check_opened(store, r);
}

/// The checks of the commit the read-only open `store` read: its object table, payloads,
/// named roots and trees.
fn check_opened(store: Store, r: &mut Report) {
    // The object table against the allocator: an open rebuilds the allocator from the table
    // and refuses a block claimed twice or beyond its class file.
    match store.verify().and_then(|_| store.stats()) {
        Ok(st) => r.ok(
            "object table",
            format!(
                "{} live nodes in {} handles at epoch {}; every block owned once, inside its class file",
                st.live_nodes, st.handles, st.epoch
            ),
        ),
        Err(e) => r.problem("object table", e.to_string()),
    }
    match store.check_checksums(MISMATCHES_LISTED) {
        Ok(found) if found.is_empty() => r.ok("payloads", "every committed node's bytes match their checksum"),
        Ok(found) => found.iter().for_each(|e| r.problem("payloads", e.to_string())),
        Err(e) => r.problem("payloads", e.to_string()),
    }
    let trees = match list_trees(&store) {
        Ok(t) => t,
        Err(e) => return r.problem("trees", e.to_string()),
    };
    report_named_roots(&store, r);
    for d in trees {
        let name = String::from_utf8_lossy(&d.name).into_owned();
        if d.custom_order {
            r.ok("tree", format!("{name}: ordered by its host's comparator; its pages are checked by checksum only"));
            continue;
        }
        match BTree::open_existing(&store, &d.name).and_then(|t| t.verify()) {
            Ok(()) => r.ok("tree", format!("{name}: {} entries, height {}, verified", d.entries, d.height)),
            Err(e) => r.problem("tree", format!("{name}: {e}")),
        }
    }
}

/// The host's named roots, each with the node it names: a root may hold any 64-bit value, so
/// one that names no live node is listed, not counted as a problem.
fn report_named_roots(store: &pcore::Store, r: &mut Report) {
    match list_named_roots(store) {
        Ok(roots) => {
            for (name, root) in roots {
                let what = if names_live_node(store, root.id) { "a live node" } else { "no live node" };
                r.ok("root", format!("{}: {:#x}, {what}", root_name(&name), root.id));
            }
        }
        Err(e) => r.problem("roots", e.to_string()),
    }
}
