//! BPF program loading and cgroup attachment (the cgroup v2 device controller).
//!
//! Only what the device controller needs: load a `BPF_PROG_TYPE_CGROUP_DEVICE` program, attach
//! it to a cgroup directory fd (`BPF_CGROUP_DEVICE`), list the programs already attached there,
//! open them by id and detach them. The instructions themselves are built by safe code elsewhere
//! (the `cgroups` crate); this module only hands them to the kernel.

use std::ffi::CStr;
use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

// enum bpf_cmd (include/uapi/linux/bpf.h)
const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_PROG_ATTACH: libc::c_int = 8;
const BPF_PROG_DETACH: libc::c_int = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_int = 13;
const BPF_PROG_QUERY: libc::c_int = 16;

// enum bpf_prog_type / enum bpf_attach_type
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

/// Attach flag: several programs may be attached to the cgroup; all of them must allow.
pub const BPF_F_ALLOW_MULTI: u32 = 1 << 1;
/// Attach flag: atomically replace the program given as `replace` (needs `BPF_F_ALLOW_MULTI`).
pub const BPF_F_REPLACE: u32 = 1 << 2;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Insn {
    /// Opcode (class | operation | source).
    pub code: u8,
    /// Destination register in the low nibble, source register in the high nibble
    /// (the C bitfields `dst_reg:4, src_reg:4` on a little-endian machine).
    pub regs: u8,
    /// Signed offset (memory access or jump distance in instructions).
    pub off: i16,
    /// Signed 32-bit immediate.
    pub imm: i32,
}

impl Insn {
    /// An instruction from its fields.
    pub const fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        #[cfg(target_endian = "little")]
        let regs = (src << 4) | (dst & 0x0f);
        #[cfg(target_endian = "big")]
        let regs = (dst << 4) | (src & 0x0f);
        Insn {
            code,
            regs,
            off,
            imm,
        }
    }

    /// The destination register.
    pub const fn dst(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs & 0x0f;
        #[cfg(target_endian = "big")]
        return self.regs >> 4;
    }

    /// The source register.
    pub const fn src(&self) -> u8 {
        #[cfg(target_endian = "little")]
        return self.regs >> 4;
        #[cfg(target_endian = "big")]
        return self.regs & 0x0f;
    }
}

/// A program the kernel refused, with the verifier's explanation when it gave one.
#[derive(Debug)]
pub struct LoadError {
    /// The error `bpf(BPF_PROG_LOAD)` returned.
    pub error: io::Error,
    /// The verifier log (empty if the kernel wrote none).
    pub log: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bpf(BPF_PROG_LOAD): {}", self.error)?;
        let log = self.log.trim();
        if !log.is_empty() {
            write!(f, "; verifier: {log}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to `expected_attach_type`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` / `BPF_PROG_DETACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// The `BPF_PROG_GET_FD_BY_ID` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct GetFdByIdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Marker for the attribute structs above: plain `repr(C)` data whose layout matches a prefix
/// of the kernel's `union bpf_attr` for the command it is used with.
trait Attr {}
impl Attr for ProgLoadAttr {}
impl Attr for AttachAttr {}
impl Attr for QueryAttr {}
impl Attr for GetFdByIdAttr {}

/// `bpf(cmd, attr, sizeof attr)`.
///
/// Callers pair each command with its attribute struct; any pointers stored in `attr` must be
/// valid for the kernel to read (or write, for output buffers) for the duration of the call.
fn bpf<A: Attr>(cmd: libc::c_int, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, exclusively borrowed `repr(C)` struct whose size we pass, so the
    // kernel reads (and for BPF_PROG_QUERY writes back) only within it; every caller below
    // stores in it only pointers to buffers that outlive this call, with the matching lengths.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut libc::c_void,
            size_of::<A>() as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Turns the fd number a successful `bpf()` call returned into an owned fd.
fn owned_fd(ret: libc::c_long) -> io::Result<OwnedFd> {
    let fd = i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: the kernel just created this descriptor for us (BPF_PROG_LOAD and
    // BPF_PROG_GET_FD_BY_ID return a new fd); nothing else owns or closes it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    // A borrowed fd is never negative.
    fd.as_raw_fd() as u32
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program. `name` (at most 15 bytes of `[A-Za-z0-9_.]`,
/// longer names are cut) shows in `bpftool prog`. On failure the load is retried once with the
/// verifier log enabled so the error says why.
pub fn load_cgroup_device_program(
    insns: &[Insn],
    license: &CStr,
    name: &str,
) -> Result<OwnedFd, LoadError> {
    let insn_cnt = u32::try_from(insns.len()).map_err(|_| LoadError {
        error: io::Error::from_raw_os_error(libc::E2BIG),
        log: String::new(),
    })?;
    let mut prog_name = [0u8; 16];
    for (dst, b) in prog_name.iter_mut().zip(
        name.bytes()
            .filter(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
            .take(15),
    ) {
        *dst = b;
    }
    let attr = |log: &mut [u8]| ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: u32::from(!log.is_empty()),
        log_size: log.len() as u32,
        log_buf: if log.is_empty() {
            0
        } else {
            log.as_mut_ptr() as u64
        },
        prog_name,
        ..ProgLoadAttr::default()
    };
    match bpf(BPF_PROG_LOAD, &mut attr(&mut [])) {
        Ok(fd) => owned_fd(fd).map_err(|error| LoadError {
            error,
            log: String::new(),
        }),
        Err(first) => {
            let mut log = vec![0u8; 64 * 1024];
            let error = match bpf(BPF_PROG_LOAD, &mut attr(&mut log)) {
                // Loading worked the second time (a transient failure): keep it.
                Ok(fd) => {
                    return owned_fd(fd).map_err(|error| LoadError {
                        error,
                        log: String::new(),
                    })
                }
                Err(_) => first,
            };
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(LoadError {
                error,
                log: String::from_utf8_lossy(&log[..end]).into_owned(),
            })
        }
    }
}

/// Attaches `prog` to the cgroup open at `cgroup` as its device filter. `flags` is 0,
/// [`BPF_F_ALLOW_MULTI`], or `BPF_F_ALLOW_MULTI | BPF_F_REPLACE` with `replace` set to the
/// program to swap out atomically.
pub fn attach_cgroup_device(
    cgroup: BorrowedFd<'_>,
    prog: BorrowedFd<'_>,
    flags: u32,
    replace: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags,
        replace_bpf_fd: replace.map(fd_u32).unwrap_or(0),
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop)
}

/// Detaches `prog` from the cgroup open at `cgroup`.
pub fn detach_cgroup_device(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>) -> io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: fd_u32(cgroup),
        attach_bpf_fd: fd_u32(prog),
        attach_type: BPF_CGROUP_DEVICE,
        ..AttachAttr::default()
    };
    bpf(BPF_PROG_DETACH, &mut attr).map(drop)
}

/// The programs attached directly to the cgroup open at `cgroup` as device filters (not the
/// ones inherited from its ancestors): their ids and the cgroup's attach flags.
pub fn query_cgroup_device(cgroup: BorrowedFd<'_>) -> io::Result<(Vec<u32>, u32)> {
    let mut ids = vec![0u32; 16];
    loop {
        let mut attr = QueryAttr {
            target_fd: fd_u32(cgroup),
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..QueryAttr::default()
        };
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok((ids, attr.attach_flags));
            }
            // The buffer was too small: the kernel told us how many there are.
            Err(e)
                if e.raw_os_error() == Some(libc::ENOSPC) && attr.prog_cnt as usize > ids.len() =>
            {
                ids = vec![0u32; attr.prog_cnt as usize];
            }
            Err(e) => return Err(e),
        }
    }
}

/// Opens the loaded program with id `id`.
pub fn prog_fd_by_id(id: u32) -> io::Result<OwnedFd> {
    let mut attr = GetFdByIdAttr {
        prog_id: id,
        ..GetFdByIdAttr::default()
    };
    owned_fd(bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_sizes_match_the_kernel_layout() {
        assert_eq!(size_of::<Insn>(), 8);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(size_of::<AttachAttr>(), 20);
        assert_eq!(size_of::<QueryAttr>(), 32);
        assert_eq!(size_of::<GetFdByIdAttr>(), 12);
    }

    #[test]
    fn insn_registers_round_trip() {
        let i = Insn::new(0xbf, 3, 2, 0, 0);
        assert_eq!((i.dst(), i.src()), (3, 2));
    }
}
