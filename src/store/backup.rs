//! Online backup: a consistent, compacted copy of a store's last commit, taken while the
//! writer goes on.
//!
//! The copy reads through a snapshot, so the writer's later commits neither change nor free
//! what it copies, and holds the store's state lock (shared) for one chunk of handles at a
//! time, so the writer waits at most that long. It is written as a new store, in a directory
//! beside the destination, with the original's handles, tags, kinds and size classes: every
//! node id and root of the original is valid in the copy. Blocks are taken in handle order
//! from empty class files, so the copy is dense. The new store is committed once with its
//! payloads synced in place rather than logged (a backup writes each byte once) at the
//! original's epoch, checkpointed at its close, and only then renamed to the destination: a
//! destination is a whole copy or absent, whenever the process dies. Each node's bytes are
//! checked against their checksum on the way: a damaged block fails the backup instead of
//! being copied under a new checksum.
//!
//! The copy is built in `.pcore-backup-<pid>-<n>` in the destination's parent: a name of its
//! own per call (threads back up side by side), short whatever the destination's name, and
//! owned by a process, so a later backup removes it only once that process is gone.

use super::api::{Durability, Snapshot, Store, StoreOptions};
use super::core::Core;
use crate::error::{Error, Result};
use crate::os::{DirLock, LockError};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Replace a store already at the destination (in one step: the name never goes missing).
/// Only a store: a directory without a store's meta file is never replaced.
pub const BACKUP_REPLACE: u32 = 1;
const BACKUP_FLAGS: u32 = BACKUP_REPLACE;

/// Handles copied per hold of the original's state lock.
const CHUNK_HANDLES: u64 = 4096;

/// What a backup copied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// The commit copied: the original's epoch when the backup began.
    pub epoch: u64,
    pub nodes: u64,
    pub roots: u64,
    /// Bytes of the blocks that hold the copied nodes (their size classes').
    pub live_bytes: u64,
    /// Bytes the copy's directory takes on disk once closed.
    pub disk_bytes: u64,
}

impl Store {
    /// Copies the last commit to a new store in `dest` while this store goes on being used
    /// (see the module comment). `dest`'s parent must exist; `dest` must not exist or be an
    /// empty directory, unless `flags` has [`BACKUP_REPLACE`]: then a store there is replaced
    /// (`Busy` while a writer has it open; never this store, nor a directory holding it). On
    /// any error nothing is left at `dest` that was not there before.
    pub fn backup(&self, dest: &Path, flags: u32) -> Result<BackupReport> {
        self.backup_with_progress(dest, flags, |_, _| {})
    }

    /// [`Store::backup`], calling `progress(handles done, handles in all)` after each chunk.
    pub fn backup_with_progress(
        &self,
        dest: &Path,
        flags: u32,
        progress: impl FnMut(u64, u64),
    ) -> Result<BackupReport> {
        if flags & !BACKUP_FLAGS != 0 {
            return Err(Error::InvalidArgument(format!("unknown backup flags {:#x}", flags & !BACKUP_FLAGS)));
        }
        let replace = flags & BACKUP_REPLACE != 0;
        let source = self.dir();
        check_destination(dest, replace, source.as_deref())?;
        let snapshot = self.snapshot()?;
        sweep_dead_partials(&parent_of(dest));
        let partial = partial_path(dest);
        let result = copy_snapshot(&snapshot, &partial, progress).and_then(|report| {
            move_into_place(&partial, dest, replace, source.as_deref())?;
            Ok(report)
        });
        if result.is_err() {
            let _ = std::fs::remove_dir_all(&partial);
        }
        result
    }
}

fn copy_snapshot(snapshot: &Snapshot, partial: &Path, mut progress: impl FnMut(u64, u64)) -> Result<BackupReport> {
    let source = snapshot.store();
    let epoch = snapshot.epoch();
    let (min_class_bytes, max_class_bytes, handles) = source
        .read_state(|c| Ok((c.space.classes().min_bytes(), c.space.classes().max_bytes(), c.table.handle_count())))?;
    let options = StoreOptions {
        durability: Durability::Strict,
        min_class_bytes,
        max_class_bytes,
        // Synced in place at the one commit, not logged: each byte is written once.
        inline_payload_max_bytes: 0,
        checkpoint_log_bytes: u64::MAX,
        create: true,
        read_only: false,
        verify_checksums: false,
        // Written and closed in one go: no thread to rest it.
        idle_checkpoint_ms: u32::MAX,
        ..StoreOptions::default()
    };
    if partial.exists() {
        return Err(Error::InvalidArgument(format!("{} exists already", partial.display())));
    }
    let copy = Store::open(partial, &options).map_err(copy_failed)?;
    let mut report = BackupReport { epoch, ..BackupReport::default() };
    let mut start = 1;
    while start < handles {
        let chunk = start..(start + CHUNK_HANDLES).min(handles);
        source.read_state(|src| copy.mutate(|dst| copy_handles(src, dst, epoch, chunk.clone(), &mut report)))?;
        start = chunk.end;
        progress(start - 1, handles - 1);
    }
    for name in source.root_names()? {
        if let Some(root) = source.get_root(&name)? {
            copy.set_root(&name, root.id, &root.meta)?;
            report.roots += 1;
        }
    }
    copy.mutate(|c| {
        c.restored();
        // The copy's one commit is the original's: epochs a host keeps (retire epochs, say)
        // go on meaning what they meant.
        c.epoch = epoch.max(1) - 1;
        Ok(())
    })?;
    copy.commit().map_err(copy_failed)?;
    copy.close().map_err(copy_failed)?;
    crate::os::sync_dir(partial).map_err(|e| Error::io(format!("sync {}", partial.display()), e))?;
    report.disk_bytes = disk_bytes(partial)?;
    Ok(report)
}

/// Copies the versions commit `epoch` left of the handles in `range`.
fn copy_handles(src: &Core, dst: &mut Core, epoch: u64, range: Range<u64>, report: &mut BackupReport) -> Result<()> {
    for handle in range {
        let Some(v) = src.handle_version_at(handle, epoch) else {
            dst.restore_free(handle, src.table.slots[handle as usize].tag)?;
            continue;
        };
        let bytes = src.space.read(v.loc, v.len as usize);
        if !src.version_intact(handle, epoch, &v) {
            let (file, offset) = src.space.file_position(v.loc);
            let id = super::NodeId::from_parts(handle, v.tag);
            return Err(Error::corrupt(
                file,
                offset,
                format!("node {id}: its {} bytes do not match their checksum; the backup stopped", v.len),
            ));
        }
        dst.restore(handle, v.tag, v.kind, v.loc.class, bytes)?;
        report.nodes += 1;
        report.live_bytes += u64::from(src.space.capacity(v.loc.class));
    }
    Ok(())
}

/// A destination the backup may write: absent or an empty directory in a directory that
/// exists, or (with `replace`) a store no writer has open that is neither the original nor
/// holds it. Not a symbolic link: replacing one would swap out the link, not the store.
/// `Some(lock)`: a store to replace, locked against writers until the lock is dropped.
fn check_destination(dest: &Path, replace: bool, source: Option<&Path>) -> Result<Option<DirLock>> {
    let io = |e| Error::io(format!("look at the backup destination {}", dest.display()), e);
    let invalid = |why: &str| Err(Error::InvalidArgument(format!("the backup destination {} {why}", dest.display())));
    if dest.file_name().is_none() {
        return invalid("has no name");
    }
    if !parent_of(dest).is_dir() {
        return invalid("is in a directory that does not exist");
    }
    match std::fs::symlink_metadata(dest) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
        Ok(m) if m.file_type().is_symlink() => return invalid("is a symbolic link: give the directory itself"),
        Ok(m) if !m.is_dir() => return invalid("is not a directory"),
        Ok(_) => {}
    }
    if std::fs::read_dir(dest).map_err(io)?.next().is_none() {
        return Ok(None);
    }
    if !replace {
        return invalid("is not empty (pass the replace flag to replace a store there)");
    }
    if !dest.join(super::meta::META_FILE).is_file() {
        return invalid("holds no store (no meta file): only a store is replaced");
    }
    if let Some(source) = source {
        let (dest, source) = (dest.canonicalize().map_err(io)?, source.canonicalize().map_err(io)?);
        if source.starts_with(&dest) {
            return invalid("is the store being backed up, or holds it");
        }
    }
    lock_destination(dest).map(Some)
}

fn lock_destination(dest: &Path) -> Result<DirLock> {
    DirLock::acquire(dest).map_err(|e| match e {
        LockError::Held => Error::Busy(format!("a writer has {} open: it cannot be replaced", dest.display())),
        LockError::Io(e) => Error::io(format!("lock {}", dest.display()), e),
    })
}

/// Renames the finished copy to `dest` (swapping it with the store there when replacing,
/// checked again now) and makes the rename durable. When the directory's sync fails the
/// rename is undone, so the error leaves `dest` as it was (outsider11 G11): the copy goes
/// back to `partial`, which the caller removes.
fn move_into_place(partial: &Path, dest: &Path, replace: bool, source: Option<&Path>) -> Result<()> {
    let io = |what: &str, e| Error::io(format!("{what} {}", dest.display()), e);
    let parent = parent_of(dest);
    match check_destination(dest, replace, source)? {
        Some(_lock) => {
            crate::os::exchange(partial, dest).map_err(|e| io("swap the copy into", e))?;
            // `partial` now names the replaced store: it goes once the swap is durable.
            if let Err(e) = sync_parent(&parent) {
                return Err(match crate::os::exchange(partial, dest) {
                    Ok(()) => io("sync the directory of", e),
                    Err(back) => io("sync the directory of (the copy stays in place: swapping back failed)", back),
                });
            }
            // The backup is done: a part of the replaced store left behind here is swept by a
            // later backup into this directory once this process is gone.
            let _ = std::fs::remove_dir_all(partial);
        }
        // Over an empty directory, or a new name; refused if another backup got there first.
        None => {
            let was_empty_dir = dest.is_dir();
            std::fs::rename(partial, dest).map_err(|e| match e.raw_os_error() {
                Some(libc::ENOTEMPTY) | Some(libc::EEXIST) => Error::InvalidArgument(format!(
                    "the backup destination {} was filled while the copy was made",
                    dest.display()
                )),
                _ => io("rename the copy to", e),
            })?;
            if let Err(e) = sync_parent(&parent) {
                if let Err(back) = std::fs::rename(dest, partial) {
                    return Err(io("sync the directory of (the copy stays in place: renaming it back failed)", back));
                }
                if was_empty_dir {
                    let _ = std::fs::create_dir(dest);
                }
                return Err(io("sync the directory of", e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
thread_local! {
    /// Makes the sync that makes a backup's final rename durable fail (tests).
    pub(crate) static FAIL_FINAL_SYNC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn sync_parent(parent: &Path) -> std::io::Result<()> {
    #[cfg(test)]
    if FAIL_FINAL_SYNC.with(|f| f.get()) {
        return Err(std::io::Error::from_raw_os_error(libc::EIO));
    }
    crate::os::sync_dir(parent)
}

const PARTIAL_PREFIX: &str = ".pcore-backup-";

/// The directory this call builds its copy in, beside the destination (so the final rename
/// stays in one file system).
/// A sync that failed while writing the copy poisons the copy, not the store backed up, and
/// the copy is thrown away: the host hears an I/O error, not `Poisoned`, which would send it
/// to reopen a healthy store (outsider11 G10).
fn copy_failed(e: Error) -> Error {
    match e {
        Error::Poisoned(why) => {
            Error::io(format!("writing the copy: {why}"), std::io::Error::from_raw_os_error(libc::EIO))
        }
        e => e,
    }
}

fn partial_path(dest: &Path) -> PathBuf {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    parent_of(dest).join(format!("{PARTIAL_PREFIX}{}-{n}", std::process::id()))
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Removes the copies that backups of processes no longer running left in `parent` (killed
/// before their rename). Names of another shape, and the copies of live processes, stay.
fn sweep_dead_partials(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(owner) = name.to_str().and_then(partial_owner) else { continue };
        if !crate::os::process_exists(owner) && DirLock::acquire(&entry.path()).is_ok() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid in a name `partial_path` makes, or `None` for any other name.
fn partial_owner(name: &str) -> Option<u32> {
    let (pid, n) = name.strip_prefix(PARTIAL_PREFIX)?.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok()
}

/// Bytes the files of `dir` take on disk (allocated blocks, as `du` counts them).
pub(crate) fn disk_bytes(dir: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let io = |e| Error::io(format!("list {}", dir.display()), e);
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let meta = entry.map_err(io)?.metadata().map_err(io)?;
        if meta.is_file() {
            total += meta.blocks() * 512;
        }
    }
    Ok(total)
}
