//! Seccomp for the fluke runtime: compiles an OCI `linux.seccomp` profile into a classic BPF
//! filter with runc's semantics (x86_64, i386 and x32 dispatch, argument checks, the -ENOSYS
//! stub), installs it, and hands an `SCMP_ACT_NOTIFY` listener to the agent at `listenerPath`.
//!
//! ```no_run
//! # fn main() -> Result<(), seccomp::Error> {
//! # let spec: oci_spec::runtime::LinuxSeccomp = Default::default();
//! # let state_json = String::new();
//! let filter = seccomp::compile(&spec)?; // before forking the container's init
//! for warning in filter.warnings() {
//!     eprintln!("warning: {warning}");
//! }
//! // In the init, after no_new_privs (or with CAP_SYS_ADMIN), right before execve:
//! if let Some(listener) = filter.install()? {
//!     // The runtime (which can reach listenerPath) hands the listener to the agent along
//!     // with the container process state.
//!     seccomp::send_listener("/run/agent.sock".as_ref(), &listener, &state_json)?;
//! }
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod arch;
mod asm;
mod codegen;
pub mod emulate;
mod error;
mod notify;
mod profile;
mod tables;

use std::os::fd::OwnedFd;

use oci_spec::runtime::LinuxSeccomp;
pub use sys::seccomp::{SeccompData, SockFilter, BPF_MAXINSNS};

pub use arch::{Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
pub use error::{Error, Warning};
pub use notify::send_listener;
pub use profile::{
    action_value, RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRACE,
    RET_TRAP, RET_USER_NOTIF,
};

/// How to compile.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// The farthest a conditional jump may reach before it goes through a `BPF_JA`
    /// trampoline: 255 (the 8-bit offset's limit) by default; smaller values exist to test
    /// the long-jump path.
    pub max_jump: u8,
}

impl Default for Options {
    fn default() -> Self {
        Options { max_jump: u8::MAX }
    }
}

/// A compiled profile, ready to install.
#[derive(Clone, Debug)]
pub struct Filter {
    program: Vec<SockFilter>,
    flags: u32,
    optional_flags: u32,
    listener: bool,
    warnings: Vec<Warning>,
}

/// Compiles `spec` for this host with the default [`Options`].
pub fn compile(spec: &LinuxSeccomp) -> Result<Filter, Error> {
    compile_with(spec, &Options::default())
}

/// Compiles `spec` for this host.
pub fn compile_with(spec: &LinuxSeccomp, options: &Options) -> Result<Filter, Error> {
    let plan = profile::plan(spec)?;
    let program = codegen::generate(&plan, options.max_jump);
    if program.len() > BPF_MAXINSNS {
        return Err(Error::TooLong {
            len: program.len(),
            max: BPF_MAXINSNS,
        });
    }
    Ok(Filter {
        program,
        flags: plan.flags,
        optional_flags: plan.optional_flags,
        listener: plan.listener,
        warnings: plan.warnings,
    })
}

impl Filter {
    /// The BPF program.
    pub fn program(&self) -> &[SockFilter] {
        &self.program
    }

    /// The `SECCOMP_FILTER_FLAG_*` bits [`Filter::install`] asks for (NEW_LISTENER when a
    /// rule notifies; SPEC_ALLOW when the profile has no `flags`, as runc does). Those in
    /// [`Filter::optional_flags`] are dropped if the kernel does not know them.
    pub fn flags(&self) -> u32 {
        self.flags
    }

    /// Flags dropped rather than failed on when the running kernel lacks them: the implicit
    /// SPEC_ALLOW and WAIT_KILLABLE_RECV.
    pub fn optional_flags(&self) -> u32 {
        self.optional_flags
    }

    /// Whether a rule uses `SCMP_ACT_NOTIFY`, so that installing returns a listener.
    pub fn wants_listener(&self) -> bool {
        self.listener
    }

    /// What the compilation skipped (unknown names, foreign architectures, ...).
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The seccomp return value the filter gives `data`, computed by [`emulate::run`].
    pub fn evaluate(&self, data: &SeccompData) -> Result<u32, Error> {
        emulate::run(&self.program, data)
    }

    /// Loads the filter on the calling thread (every thread with TSYNC) and returns the
    /// user-notification listener when [`Filter::wants_listener`].
    ///
    /// The caller must have set `no_new_privs` or hold `CAP_SYS_ADMIN`; which one is the
    /// runtime's choice (`process.noNewPrivileges`). Everything allowed after this call
    /// is what the profile allows, so runtimes install it last, right before `execve`.
    /// Only system calls are made (no allocation unless failing): fine after `fork`.
    pub fn install(&self) -> Result<Option<OwnedFd>, Error> {
        use sys::seccomp::flags_supported;
        let mut flags = self.flags;
        for bit in (0..32).map(|i| 1u32 << i) {
            if self.optional_flags & bit != 0
                && !flags_supported(flags & !self.optional_flags | bit)
            {
                flags &= !bit;
            }
        }
        if !flags_supported(flags) {
            return Err(Error::FlagsUnsupported {
                flags: flag_names(flags),
            });
        }
        sys::seccomp::set_filter(&self.program, flags).map_err(|source| {
            let hint = match source.raw_os_error() {
                Some(13) => " (set no_new_privs first, or hold CAP_SYS_ADMIN)",
                _ => "",
            };
            Error::Load { source, hint }
        })
    }
}

fn flag_names(flags: u32) -> String {
    const NAMES: [(u32, &str); 6] = [
        (sys::seccomp::FILTER_FLAG_TSYNC, "SECCOMP_FILTER_FLAG_TSYNC"),
        (sys::seccomp::FILTER_FLAG_LOG, "SECCOMP_FILTER_FLAG_LOG"),
        (
            sys::seccomp::FILTER_FLAG_SPEC_ALLOW,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        ),
        (
            sys::seccomp::FILTER_FLAG_NEW_LISTENER,
            "SECCOMP_FILTER_FLAG_NEW_LISTENER",
        ),
        (
            sys::seccomp::FILTER_FLAG_TSYNC_ESRCH,
            "SECCOMP_FILTER_FLAG_TSYNC_ESRCH",
        ),
        (
            sys::seccomp::FILTER_FLAG_WAIT_KILLABLE_RECV,
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        ),
    ];
    let names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    names.join(" | ")
}
