//! Whether a process still runs (what tells a dead backup's leftovers from a live one's), and
//! whether this one is a forked copy of a process that used pcore.

/// True unless no process has `pid` (a process of another user counts as running).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 sends nothing; the call only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// True in a process forked from one that had opened a store. There a BALANCED store starts
/// no flusher thread, and no prefault thread starts (`os::prefault`): a second thread would make the store's locks contended, and a
/// contended parking_lot lock or condition variable waits in the process-wide parking table,
/// which the fork copied while the parent's threads may have been queued in it or holding
/// one of its buckets (an outside tester's forked child hung or crashed in `close` about once
/// in a few hundred forks). Its commits sync by age instead (see `Durability::Balanced`).
pub(crate) fn in_forked_child() -> bool {
    static FIRST_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *FIRST_PID.get_or_init(std::process::id) != std::process::id()
}

/// Runs `child` in a forked copy of this process and returns the code it exits with (`None`
/// if it did not exit: killed by a signal). For tests of what a forked child may do; the
/// caller must be the only thread that could hold a lock `child` takes.
#[cfg(test)]
pub(crate) fn exit_code_of_forked(child: impl FnOnce() -> i32) -> Option<i32> {
    // SAFETY: fork has no memory-safety preconditions; the caller keeps the child's work to
    // locks no other thread holds (see above).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        let code = child();
        // SAFETY: ends the child without running the parent's destructors or unwinding into
        // the test harness's copy.
        unsafe { libc::_exit(code) };
    }
    assert!(pid > 0, "fork failed: {}", std::io::Error::last_os_error());
    let mut status = 0;
    // SAFETY: waits for our own child; `status` is a valid place for its status.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status))
}
