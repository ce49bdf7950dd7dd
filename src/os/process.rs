//! Whether a process still runs: what tells a dead backup's leftovers from a live one's.

/// True unless no process has `pid` (a process of another user counts as running).
pub(crate) fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else { return false };
    // SAFETY: signal 0 sends nothing; the call only checks that the process exists.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
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
