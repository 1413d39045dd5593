//! Installing seccomp filters with seccomp(2), and the user-notification listener's ioctls.
//!
//! Loading a filter needs either `no_new_privs` set on the calling thread
//! (`prctl(PR_SET_NO_NEW_PRIVS, 1)`, e.g. `rustix::thread::set_no_new_privs(true)`) or
//! `CAP_SYS_ADMIN` in the caller's user namespace; otherwise the kernel answers `EACCES`.
//! Which one applies is the runtime's decision (the OCI `process.noNewPrivileges` field),
//! not this module's. The calls here allocate nothing, so they may run in a forked child.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct SockFilter {
    /// Opcode (class, size/operation, source).
    pub code: u16,
    /// Forward jump offset when the condition holds.
    pub jt: u8,
    /// Forward jump offset when it does not.
    pub jf: u8,
    /// The constant operand.
    pub k: u32,
}

const _: () =
    assert!(std::mem::size_of::<SockFilter>() == std::mem::size_of::<libc::sock_filter>());
const _: () =
    assert!(std::mem::align_of::<SockFilter>() == std::mem::align_of::<libc::sock_filter>());

/// The data a seccomp filter inspects, laid out as the kernel's `struct seccomp_data`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SeccompData {
    /// The system call number (as the architecture numbers it; x32 calls carry bit 30).
    pub nr: i32,
    /// The `AUDIT_ARCH_*` value of the calling convention.
    pub arch: u32,
    /// The instruction pointer at the time of the call.
    pub instruction_pointer: u64,
    /// The six system call arguments, zero-extended for 32-bit callers.
    pub args: [u64; 6],
}

const _: () = assert!(std::mem::size_of::<SeccompData>() == 64);
const _: () =
    assert!(std::mem::size_of::<SeccompData>() == std::mem::size_of::<libc::seccomp_data>());

/// The longest program the kernel accepts (`BPF_MAXINSNS`).
pub const BPF_MAXINSNS: usize = 4096;

/// `SECCOMP_FILTER_FLAG_TSYNC`: apply the filter to every thread of the process.
pub const FILTER_FLAG_TSYNC: u32 = 1 << 0;
/// `SECCOMP_FILTER_FLAG_LOG`: log every action except `ALLOW` (Linux 4.14).
pub const FILTER_FLAG_LOG: u32 = 1 << 1;
/// `SECCOMP_FILTER_FLAG_SPEC_ALLOW`: keep speculative store bypass mitigation off (Linux 4.17).
pub const FILTER_FLAG_SPEC_ALLOW: u32 = 1 << 2;
/// `SECCOMP_FILTER_FLAG_NEW_LISTENER`: return a user-notification listener fd (Linux 5.0).
pub const FILTER_FLAG_NEW_LISTENER: u32 = 1 << 3;
/// `SECCOMP_FILTER_FLAG_TSYNC_ESRCH`: report TSYNC failures as `ESRCH` (Linux 5.7); needed
/// to combine TSYNC with NEW_LISTENER.
pub const FILTER_FLAG_TSYNC_ESRCH: u32 = 1 << 4;
/// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV`: once the supervisor has received a
/// notification, the waiting task only reacts to fatal signals (Linux 5.19); requires
/// NEW_LISTENER.
pub const FILTER_FLAG_WAIT_KILLABLE_RECV: u32 = 1 << 5;

/// `SECCOMP_USER_NOTIF_FLAG_CONTINUE`: let the notified system call run as if allowed.
pub const USER_NOTIF_FLAG_CONTINUE: u32 = 1;

/// Loads `program` as a seccomp filter on the calling thread (all threads with
/// [`FILTER_FLAG_TSYNC`]) through `seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)`.
///
/// Returns the user-notification listener (close-on-exec) when `flags` holds
/// [`FILTER_FLAG_NEW_LISTENER`], `None` otherwise. Requires `no_new_privs` or
/// `CAP_SYS_ADMIN` (see the module documentation). With TSYNC (without TSYNC_ESRCH) a
/// positive return is the id of a thread that could not be synchronised: that is reported
/// as an `EAGAIN` error naming it.
pub fn set_filter(program: &[SockFilter], flags: u32) -> io::Result<Option<OwnedFd>> {
    if program.is_empty() || program.len() > BPF_MAXINSNS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a seccomp program has 1 to {BPF_MAXINSNS} instructions, not {}",
                program.len()
            ),
        ));
    }
    let prog = libc::sock_fprog {
        // Checked above: at most 4096, fits in u16.
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: `prog` points at `program`, a live slice of `SockFilter`, which has the
    // layout of `struct sock_filter` (asserted above); `len` is its length. The kernel only
    // reads the program (the `*mut` is an artifact of the C declaration) and copies it
    // before returning, so the borrow outlives every use. No memory of ours is written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(flags),
            std::ptr::addr_of!(prog),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    if flags & FILTER_FLAG_NEW_LISTENER != 0 {
        let fd = i32::try_from(ret).map_err(|_| io::Error::other("listener fd out of range"))?;
        // SAFETY: with NEW_LISTENER a successful seccomp(2) returns a freshly allocated
        // file descriptor that nothing else owns; we take sole ownership of it here.
        return Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }));
    }
    if ret > 0 {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            format!("TSYNC: thread {ret} could not be synchronised to the new filter"),
        ));
    }
    Ok(None)
}

/// Whether the running kernel knows every flag in `flags` (in a combination it accepts).
///
/// Probes the way libseccomp does: `seccomp(SECCOMP_SET_MODE_FILTER, flags, NULL)` fails
/// with `EFAULT` when the flags pass validation (the program pointer is then read and
/// found bad) and with `EINVAL` when they do not. Nothing is ever installed.
pub fn flags_supported(flags: u32) -> bool {
    // SAFETY: a null program pointer is never dereferenced by us; the kernel validates the
    // flags, then fails its copy from user memory with EFAULT. No memory is written.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER as libc::c_ulong,
            libc::c_ulong::from(flags),
            std::ptr::null::<libc::sock_fprog>(),
        )
    };
    ret < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EFAULT)
}

/// Whether the kernel supports the filter return action `action` (its upper 16 bits are
/// what counts), via `seccomp(SECCOMP_GET_ACTION_AVAIL)`.
pub fn action_available(action: u32) -> bool {
    let action = action & 0xffff_0000;
    // SAFETY: the kernel reads one u32 through the pointer, which points at a live local.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_GET_ACTION_AVAIL as libc::c_ulong,
            0 as libc::c_ulong,
            std::ptr::addr_of!(action),
        )
    };
    ret == 0
}

/// A system call waiting for the supervisor's answer (`struct seccomp_notif`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Notification {
    /// The cookie to answer with; valid until answered or the caller dies.
    pub id: u64,
    /// The calling thread, as seen from the listener's PID namespace.
    pub pid: u32,
    /// Notification flags (none are defined yet).
    pub flags: u32,
    /// The system call and its arguments.
    pub data: SeccompData,
}

/// Blocks until a filtered thread makes a `SCMP_ACT_NOTIFY` system call and returns it
/// (`SECCOMP_IOCTL_NOTIF_RECV`). Fails with `ENOENT` if the caller went away meanwhile.
pub fn notif_recv(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // The kernel insists on a zeroed buffer.
    // SAFETY: `seccomp_notif` is plain old data (integers only); all-zero is a valid value.
    let mut raw: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one `struct seccomp_notif` into `raw`, a live, properly
    // sized and aligned local of exactly that type; the fd is borrowed, so it is open.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            std::ptr::addr_of_mut!(raw),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Notification {
        id: raw.id,
        pid: raw.pid,
        flags: raw.flags,
        data: SeccompData {
            nr: raw.data.nr,
            arch: raw.data.arch,
            instruction_pointer: raw.data.instruction_pointer,
            args: raw.data.args,
        },
    })
}

/// Answers notification `id` (`SECCOMP_IOCTL_NOTIF_SEND`): the system call returns `val`
/// when `error` is 0, fails with errno `-error` when `error` is negative, or runs for real
/// with `flags` = [`USER_NOTIF_FLAG_CONTINUE`] (then `val` and `error` must be 0).
pub fn notif_respond(
    listener: BorrowedFd<'_>,
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val,
        error,
        flags,
    };
    // SAFETY: the ioctl reads one `struct seccomp_notif_resp` from `resp`, a live local of
    // exactly that type; the fd is borrowed, so it is open.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            std::ptr::addr_of_mut!(resp),
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_probe_tells_known_from_unknown() {
        assert!(flags_supported(0));
        assert!(flags_supported(FILTER_FLAG_LOG));
        assert!(!flags_supported(1 << 30));
    }

    #[test]
    fn actions_are_available() {
        assert!(action_available(0x7fff_0000)); // ALLOW
        assert!(action_available(0x0005_0001)); // ERRNO(EPERM)
        assert!(!action_available(0x1234_0000));
    }

    #[test]
    fn empty_and_oversized_programs_are_refused_before_the_kernel() {
        assert_eq!(
            set_filter(&[], 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        let big = vec![SockFilter::default(); BPF_MAXINSNS + 1];
        assert_eq!(
            set_filter(&big, 0).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
