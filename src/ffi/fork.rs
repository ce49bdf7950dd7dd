//! Handles belong to the process that opened them. A child made by `fork` inherits the
//! parent's handle tables, but not its threads, and shares its lock and files: a commit through
//! an inherited store would answer OK and then vanish (the parent's next commit overwrites
//! it), and a close would checkpoint the parent's store and release its lock. So every call
//! through an inherited handle is refused (as LMDB documents: use no environment across fork).
//!
//! The check costs one relaxed load per call: `pthread_atfork` handlers, installed at the first
//! handle's open, give each child a new `PROCESS` value, and each handle records the one it
//! was opened under. `getpid()` per call would be a system call.
//!
//! The same handlers hold every handle table's lock across `fork`, so the child gets tables
//! in a consistent state and locks that no vanished thread holds.

use std::any::Any;
use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, Once, PoisonError};

/// Which process this is: the number of forks from the process that installed the hooks,
/// << 32, | the pid (for messages). The count makes a grandchild differ from its grandparent
/// even when pids are reused. 0 until the first handle opens.
static PROCESS: AtomicU64 = AtomicU64::new(0);

static INSTALL: Once = Once::new();

/// The handle tables the hooks lock, in the order they were first used (always stores, then
/// trees, then cursors: a tree needs a store, a cursor a tree). std's lock, not parking_lot's,
/// for the reason given on `Registry`.
static TABLES: Mutex<Vec<&'static dyn ForkLock>> = Mutex::new(Vec::new());

thread_local! {
    /// The guards `prepare` took, released after the fork (the child's only thread is the
    /// image of the one that forked, so it finds them here too).
    static HELD: RefCell<Vec<Box<dyn Any>>> = const { RefCell::new(Vec::new()) };
}

/// A table whose lock is held across `fork`.
pub(crate) trait ForkLock: Sync {
    /// Takes the table's lock; dropping the guard returned releases it.
    fn lock_for_fork(&'static self) -> Box<dyn Any>;
}

fn tables() -> MutexGuard<'static, Vec<&'static dyn ForkLock>> {
    TABLES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// This process's value, to compare with a handle's (one relaxed load: it changes only in a
/// child's fork hook, before any other code runs there).
#[inline]
pub(crate) fn this_process() -> u64 {
    PROCESS.load(Ordering::Relaxed)
}

/// The pid recorded in a process value.
pub(crate) fn pid_of(process: u64) -> u32 {
    process as u32
}

/// Installs the fork hooks (once per process image; a child inherits them) and adds `table`
/// to the tables they lock, once: `hooked` says whether it is there (set under the list's
/// lock, so a fork meanwhile sees the table either listed and flagged or neither).
pub(crate) fn hook(table: &'static dyn ForkLock, hooked: &AtomicBool) {
    INSTALL.call_once(|| {
        PROCESS.store(u64::from(std::process::id()), Ordering::Relaxed);
        // SAFETY: registering three extern "C" functions that live for the whole program.
        let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
        // Fails only for want of memory; then inherited handles go unnoticed, as before.
        debug_assert_eq!(rc, 0, "pthread_atfork");
    });
    let mut tables = tables();
    if !hooked.load(Ordering::Acquire) {
        tables.push(table);
        hooked.store(true, Ordering::Release);
    }
}

extern "C" fn prepare() {
    let list = tables();
    let mut held: Vec<Box<dyn Any>> = list.iter().map(|t| t.lock_for_fork()).collect();
    // Released last: no table joins the list meanwhile.
    held.insert(0, Box::new(list));
    HELD.with(|h| *h.borrow_mut() = held);
}

/// Drops what `prepare` took: the tables' guards in reverse order, then the list's.
fn release() {
    let mut held = HELD.with(|h| std::mem::take(&mut *h.borrow_mut()));
    while let Some(guard) = held.pop() {
        drop(guard);
    }
}

extern "C" fn parent() {
    release();
}

extern "C" fn child() {
    let forks = (PROCESS.load(Ordering::Relaxed) >> 32) + 1;
    PROCESS.store(forks << 32 | u64::from(std::process::id()), Ordering::Relaxed);
    release();
}
