//! Process creation and namespace detachment for the OCI runtime.

use std::io;

/// What `fork` returned in this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fork {
    /// In the parent, with the child's pid.
    Parent(i32),
    Child,
}

/// `fork()`.
///
/// # Safety
///
/// The calling process must be single-threaded: in the child only the calling thread
/// exists, so locks held by other threads (the allocator's among them) would stay locked
/// for ever. fluke's runtime command and its guest init never start threads before they
/// fork; the runtime library documents the same requirement for its callers.
pub unsafe fn fork() -> io::Result<Fork> {
    // SAFETY: fork takes no arguments; the caller guarantees there are no other threads,
    // which is what makes continuing to run Rust code in the child sound.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// `unshare(flags)` with the `CLONE_NEW*` namespace flags (and `CLONE_FS`).
///
/// Refuses `CLONE_FILES`, `CLONE_VM` and `CLONE_SIGHAND`: those split state between
/// threads, which is why the general call is unsafe; namespace flags are not.
pub fn unshare_namespaces(flags: libc::c_int) -> io::Result<()> {
    const ALLOWED: libc::c_int = libc::CLONE_NEWNS
        | libc::CLONE_NEWUTS
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWNET
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWUSER
        | libc::CLONE_NEWCGROUP
        | libc::CLONE_NEWTIME
        | libc::CLONE_FS;
    if flags & !ALLOWED != 0 {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: unshare takes an integer and changes only this process's namespace
    // membership; with the flags restricted above it cannot leave threads sharing a file
    // table or memory in an inconsistent way.
    if unsafe { libc::unshare(flags) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ends the current process at once with `code`, running no destructors and no atexit
/// handlers (for a forked child that must not flush its parent's buffers twice).
pub fn exit_immediately(code: i32) -> ! {
    // SAFETY: _exit never returns and touches no memory of this process.
    unsafe { libc::_exit(code) }
}

/// Number of threads in this process (from `/proc/self/task`).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// [`fork`], made safe by checking its precondition: fails with `EDEADLK` unless this
/// process has exactly one thread.
pub fn fork_single_threaded() -> io::Result<Fork> {
    if thread_count()? != 1 {
        return Err(io::Error::other(
            "fork refused: the process has more than one thread",
        ));
    }
    // SAFETY: checked just above: this is the only thread, and nothing in this call path
    // starts another between the check and the fork.
    unsafe { fork() }
}

/// Marks every open descriptor numbered `first` or above close-on-exec, so that none of
/// them reaches a program this process executes.
pub fn cloexec_from(first: i32) -> io::Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd >= first)
        .collect();
    for fd in fds {
        // SAFETY: F_SETFD only changes a flag of the descriptor, whatever it is; a number
        // that was closed meanwhile (the directory listing's own) fails with EBADF, which
        // is ignored.
        let _ = unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}
