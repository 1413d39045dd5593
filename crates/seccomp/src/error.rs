//! The crate's one error type, and the warnings a compilation collects.

use std::fmt;
use std::io;
use std::path::PathBuf;

/// Everything that can go wrong compiling, installing or handing over a seccomp filter.
/// Profile errors name the field at fault the way the OCI configuration spells it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `SCMP_ACT_NOTIFY` as the default action (runc refuses it too: the runtime's own
    /// calls after loading the filter would wait on an agent that has no listener yet).
    #[error("linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")]
    NotifyDefault,
    /// `SCMP_ACT_NOTIFY` on `write`, which the runtime needs to hand the listener over.
    #[error(
        "linux.seccomp.syscalls[{rule}]: SCMP_ACT_NOTIFY cannot be used for the write system call"
    )]
    NotifyWrite {
        /// Index in `syscalls`.
        rule: usize,
    },
    /// An empty string among a rule's names.
    #[error("linux.seccomp.syscalls[{rule}].names[{name}]: empty system call name")]
    EmptyName {
        /// Index in `syscalls`.
        rule: usize,
        /// Index in `names`.
        name: usize,
    },
    /// An argument index beyond the six a system call has.
    #[error("linux.seccomp.syscalls[{rule}].args[{arg}].index: {index} is not an argument of {syscall} (0 to 5)")]
    ArgIndex {
        /// Index in `syscalls`.
        rule: usize,
        /// Index in `args`.
        arg: usize,
        /// The index given.
        index: usize,
        /// The rule's names.
        syscall: String,
    },
    /// An `errnoRet` too large for the 16-bit data field of a seccomp return value.
    #[error(
        "linux.seccomp.syscalls[{rule}].errnoRet: {value} (for {syscall}) does not fit in 16 bits"
    )]
    ErrnoRet {
        /// Index in `syscalls`.
        rule: usize,
        /// The value given.
        value: u32,
        /// The rule's names.
        syscall: String,
    },
    /// A `defaultErrnoRet` too large for the 16-bit data field.
    #[error("linux.seccomp.defaultErrnoRet: {value} does not fit in 16 bits")]
    DefaultErrnoRet {
        /// The value given.
        value: u32,
    },
    /// The host is not an x86 machine, the only family fluke has system call tables for.
    #[error("no seccomp system call tables for this host architecture ({0})")]
    UnsupportedHost(&'static str),
    /// The program came out longer than the kernel accepts.
    #[error("the seccomp program needs {len} instructions, more than the kernel's {max}")]
    TooLong {
        /// Instructions generated.
        len: usize,
        /// `BPF_MAXINSNS`.
        max: usize,
    },
    /// The running kernel rejects a requested filter flag.
    #[error("linux.seccomp.flags: the running kernel does not support {flags}")]
    FlagsUnsupported {
        /// The flags requested, by name.
        flags: String,
    },
    /// seccomp(2) refused the filter.
    #[error("loading the seccomp filter{hint}: {source}")]
    Load {
        /// What the kernel said.
        #[source]
        source: io::Error,
        /// A hint at the cause, or empty.
        hint: &'static str,
    },
    /// Handing the listener to the agent at `listenerPath` failed.
    #[error("linux.seccomp.listenerPath {path}: {what}: {source}")]
    Listener {
        /// The socket path.
        path: PathBuf,
        /// The step that failed.
        what: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The BPF emulator met an instruction the kernel would not run.
    #[error("BPF emulation, instruction {pc}: {reason}")]
    Emulate {
        /// Index of the offending instruction.
        pc: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Something a compilation skipped or changed, as runc would (it logs these and goes on).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Warning {
    /// A name no system call table knows: the rule is skipped for it.
    UnknownSyscall {
        /// Index in `syscalls`.
        rule: usize,
        /// The name.
        name: String,
    },
    /// An architecture fluke has no table for; its callers cannot run on this host anyway.
    IgnoredArch {
        /// The `SCMP_ARCH_*` name.
        arch: String,
    },
    /// `errnoRet` on an action that has no data field (`None`: `defaultErrnoRet`).
    ErrnoRetIgnored {
        /// Index in `syscalls`, or `None` for the default action.
        rule: Option<usize>,
    },
    /// `SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV` without any `SCMP_ACT_NOTIFY` rule: the
    /// kernel accepts it only with a listener, so it is dropped.
    WaitKillableWithoutListener,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::UnknownSyscall { rule, name } => write!(
                f,
                "linux.seccomp.syscalls[{rule}]: unknown system call {name:?} ignored"
            ),
            Warning::IgnoredArch { arch } => write!(
                f,
                "linux.seccomp.architectures: {arch} has no system call table here; ignored"
            ),
            Warning::ErrnoRetIgnored { rule: Some(rule) } => write!(
                f,
                "linux.seccomp.syscalls[{rule}].errnoRet: only used by SCMP_ACT_ERRNO and SCMP_ACT_TRACE; ignored"
            ),
            Warning::ErrnoRetIgnored { rule: None } => write!(
                f,
                "linux.seccomp.defaultErrnoRet: only used by SCMP_ACT_ERRNO and SCMP_ACT_TRACE; ignored"
            ),
            Warning::WaitKillableWithoutListener => write!(
                f,
                "linux.seccomp.flags: SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule; dropped"
            ),
        }
    }
}
