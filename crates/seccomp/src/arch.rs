//! The system call ABIs fluke has name tables for, and name resolution on each.

use crate::tables;

/// `AUDIT_ARCH_X86_64`: what `seccomp_data.arch` holds for x86_64 and x32 callers.
pub const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
/// `AUDIT_ARCH_I386`: what `seccomp_data.arch` holds for i386 callers.
pub const AUDIT_ARCH_I386: u32 = 0x4000_0003;
/// `__X32_SYSCALL_BIT`: set in the system call number of every x32 call.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A system call ABI: a calling convention with its own system call numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Abi {
    /// 64-bit x86 (`SCMP_ARCH_X86_64`).
    X86_64,
    /// 32-bit x86 (`SCMP_ARCH_X86`).
    X86,
    /// x86_64 with 32-bit pointers (`SCMP_ARCH_X32`): x86_64's `arch`, numbers with bit 30.
    X32,
}

impl Abi {
    /// Every ABI, in the order the filter checks them.
    pub const ALL: [Abi; 3] = [Abi::X86_64, Abi::X86, Abi::X32];

    /// The ABI of the machine this was built for, if it is one fluke has tables for. A
    /// libseccomp filter always covers it, whatever a profile lists.
    pub const fn native() -> Option<Abi> {
        if cfg!(all(target_arch = "x86_64", target_pointer_width = "64")) {
            Some(Abi::X86_64)
        } else if cfg!(target_arch = "x86_64") {
            Some(Abi::X32)
        } else if cfg!(target_arch = "x86") {
            Some(Abi::X86)
        } else {
            None
        }
    }

    /// The `seccomp_data.arch` value of callers using this ABI.
    pub const fn audit_arch(self) -> u32 {
        match self {
            Abi::X86_64 | Abi::X32 => AUDIT_ARCH_X86_64,
            Abi::X86 => AUDIT_ARCH_I386,
        }
    }

    /// Whether libseccomp compares only the low 32 bits of arguments on this ABI (it does
    /// for i386 and x32, whose `long` is 32 bits wide).
    pub const fn is_32bit(self) -> bool {
        matches!(self, Abi::X86 | Abi::X32)
    }

    /// The profile spelling, `SCMP_ARCH_*`.
    pub const fn scmp_name(self) -> &'static str {
        match self {
            Abi::X86_64 => "SCMP_ARCH_X86_64",
            Abi::X86 => "SCMP_ARCH_X86",
            Abi::X32 => "SCMP_ARCH_X32",
        }
    }

    fn table(self) -> &'static [(&'static str, u32)] {
        match self {
            Abi::X86_64 => tables::X86_64,
            Abi::X86 => tables::X86,
            Abi::X32 => tables::X32,
        }
    }

    /// The number of system call `name` on this ABI (x32 numbers include bit 30), or `None`
    /// if the ABI has no such call.
    pub fn syscall(self, name: &str) -> Option<u32> {
        lookup(self.table(), name)
    }

    /// The name of system call `nr` on this ABI.
    pub fn syscall_name(self, nr: u32) -> Option<&'static str> {
        self.table()
            .iter()
            .find(|(_, n)| *n == nr)
            .map(|(name, _)| *name)
    }

    /// Where a rule naming `name` lands on this ABI, as libseccomp places it: the direct
    /// system call, and on i386 also the `socketcall(2)`/`ipc(2)` multiplexer with its
    /// first argument fixed to the sub-call number.
    pub(crate) fn targets(self, name: &str) -> Vec<Target> {
        let mut out = Vec::with_capacity(2);
        if let Some(nr) = self.syscall(name) {
            out.push(Target { nr, mux: None });
        }
        if self == Abi::X86 {
            for (mux_name, subs) in [("socketcall", tables::SOCKETCALL), ("ipc", tables::IPC)] {
                if let (Some(sub), Some(nr)) = (lookup(subs, name), self.syscall(mux_name)) {
                    out.push(Target { nr, mux: Some(sub) });
                }
            }
        }
        out
    }

    /// The number libseccomp reports for `name` when runc looks for the largest system
    /// call of a profile (its -ENOSYS stub): i386's multiplexed names resolve to negative
    /// pseudo numbers there, so they never count.
    pub(crate) fn number_for_stub(self, name: &str) -> Option<u32> {
        if self == Abi::X86 && is_multiplexed(name) {
            return None;
        }
        self.syscall(name)
    }
}

/// Whether any table knows `name` (runc skips only names libseccomp does not know at all).
pub(crate) fn known_anywhere(name: &str) -> bool {
    Abi::ALL.iter().any(|abi| abi.syscall(name).is_some()) || is_multiplexed(name)
}

fn is_multiplexed(name: &str) -> bool {
    lookup(tables::SOCKETCALL, name).is_some() || lookup(tables::IPC, name).is_some()
}

fn lookup(table: &[(&str, u32)], name: &str) -> Option<u32> {
    table
        .binary_search_by(|(n, _)| (*n).cmp(name))
        .ok()
        .map(|i| table[i].1)
}

/// Where one profile name lands on one ABI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The system call number the filter sees.
    pub nr: u32,
    /// For a multiplexed call: the sub-call number the first argument must equal.
    pub mux: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_sorted_and_resolve() {
        for abi in Abi::ALL {
            assert!(abi.table().windows(2).all(|w| w[0].0 < w[1].0), "{abi:?}");
        }
        assert_eq!(Abi::X86_64.syscall("read"), Some(0));
        assert_eq!(Abi::X86_64.syscall("mkdir"), Some(83));
        assert_eq!(Abi::X86.syscall("mkdir"), Some(39));
        assert_eq!(Abi::X32.syscall("read"), Some(X32_SYSCALL_BIT));
        assert_eq!(
            Abi::X32.syscall("rt_sigaction"),
            Some(X32_SYSCALL_BIT | 512)
        );
        assert_eq!(Abi::X86_64.syscall("chown32"), None);
        assert_eq!(Abi::X86.syscall_name(102), Some("socketcall"));
    }

    #[test]
    fn i386_socket_calls_are_also_multiplexed() {
        assert_eq!(
            Abi::X86.targets("socket"),
            vec![
                Target { nr: 359, mux: None },
                Target {
                    nr: 102,
                    mux: Some(1)
                }
            ]
        );
        assert_eq!(
            Abi::X86.targets("send"),
            vec![Target {
                nr: 102,
                mux: Some(9)
            }]
        );
        assert_eq!(
            Abi::X86.targets("shmctl"),
            vec![
                Target { nr: 396, mux: None },
                Target {
                    nr: 117,
                    mux: Some(24)
                }
            ]
        );
        assert_eq!(Abi::X86_64.targets("send"), vec![]);
        assert_eq!(Abi::X86.number_for_stub("socket"), None);
        assert!(known_anywhere("send") && !known_anywhere("no_such_call"));
    }
}
