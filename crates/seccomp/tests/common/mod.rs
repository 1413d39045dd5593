//! Helpers shared by the test files: profiles from JSON, `seccomp_data` builders, and an
//! independent model of runc's semantics to check compiled programs against.

#![allow(dead_code)]

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompOperator};
use seccomp::{
    Abi, SeccompData, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, RET_ALLOW, RET_ERRNO, RET_KILL_THREAD,
    RET_LOG, RET_TRACE, X32_SYSCALL_BIT,
};

pub const AUDIT_ARCH_AARCH64: u32 = 0xc000_00b7;

pub fn profile(json: serde_json::Value) -> LinuxSeccomp {
    serde_json::from_value(json).expect("a valid LinuxSeccomp")
}

pub fn data(arch: u32, nr: u32, args: [u64; 6]) -> SeccompData {
    SeccompData {
        nr: nr as i32,
        arch,
        instruction_pointer: 0x7fff_1234_5678,
        args,
    }
}

/// The number of `name` on `abi`, which must exist.
pub fn nr(abi: Abi, name: &str) -> u32 {
    abi.syscall(name)
        .unwrap_or_else(|| panic!("{name} on {abi:?}"))
}

pub fn errno(e: u32) -> u32 {
    RET_ERRNO | e
}

// ---------------------------------------------------------------------------------------
// The reference model: runc + libseccomp semantics, written straight from their rules with
// no intervals, trees or BPF, evaluated per call.

const I386_SOCKETCALL: u32 = 102;
const I386_IPC: u32 = 117;

/// Sub-call numbers of the multiplexed i386 calls (linux/net.h, linux/ipc.h).
fn multiplexed(name: &str) -> Option<(u32, u32)> {
    let socket = [
        "socket",
        "bind",
        "connect",
        "listen",
        "accept",
        "getsockname",
        "getpeername",
        "socketpair",
        "send",
        "recv",
        "sendto",
        "recvfrom",
        "shutdown",
        "setsockopt",
        "getsockopt",
        "sendmsg",
        "recvmsg",
        "accept4",
        "recvmmsg",
        "sendmmsg",
    ];
    if let Some(i) = socket.iter().position(|n| *n == name) {
        return Some((I386_SOCKETCALL, i as u32 + 1));
    }
    let ipc = [
        ("semop", 1),
        ("semget", 2),
        ("semctl", 3),
        ("semtimedop", 4),
        ("msgsnd", 11),
        ("msgrcv", 12),
        ("msgget", 13),
        ("msgctl", 14),
        ("shmat", 21),
        ("shmdt", 22),
        ("shmget", 23),
        ("shmctl", 24),
    ];
    ipc.iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, sub)| (I386_IPC, sub))
}

fn action(a: LinuxSeccompAction, errno_ret: Option<u32>) -> u32 {
    seccomp::action_value(a, errno_ret).unwrap()
}

#[derive(Clone, Debug, PartialEq)]
struct RefCond {
    index: usize,
    op: LinuxSeccompOperator,
    value: u64,
    mask: u64,
}

impl RefCond {
    fn from(arg: &LinuxSeccompArg, narrow: bool) -> Option<RefCond> {
        let w = if narrow { 0xffff_ffffu64 } else { u64::MAX };
        let (value, mask) = if arg.op() == LinuxSeccompOperator::ScmpCmpMaskedEq {
            let mask = arg.value() & w;
            if mask == 0 {
                return None; // always true: libseccomp drops it
            }
            (arg.value_two().unwrap_or(0) & mask, mask)
        } else {
            (arg.value() & w, w)
        };
        Some(RefCond {
            index: arg.index(),
            op: arg.op(),
            value,
            mask,
        })
    }

    fn holds(&self, args: &[u64; 6]) -> bool {
        use LinuxSeccompOperator as O;
        let a = args[self.index] & self.mask;
        match self.op {
            O::ScmpCmpNe => a != self.value,
            O::ScmpCmpLt => a < self.value,
            O::ScmpCmpLe => a <= self.value,
            O::ScmpCmpEq => a == self.value,
            O::ScmpCmpGe => a >= self.value,
            O::ScmpCmpGt => a > self.value,
            O::ScmpCmpMaskedEq => a == self.value,
        }
    }
}

fn contains_all(big: &[RefCond], small: &[RefCond]) -> bool {
    small.iter().all(|c| big.contains(c))
}

fn listed(spec: &LinuxSeccomp) -> Vec<Abi> {
    use oci_spec::runtime::Arch;
    let mut out = vec![Abi::X86_64];
    for a in spec.architectures().iter().flatten() {
        let abi = match a {
            Arch::ScmpArchX86_64 | Arch::ScmpArchNative => Abi::X86_64,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchX32 => Abi::X32,
            _ => continue,
        };
        if !out.contains(&abi) {
            out.push(abi);
        }
    }
    out
}

/// The largest number any rule names on `abi` (runc's stub; i386's multiplexed names are
/// pseudo calls there), if not 0.
fn largest(spec: &LinuxSeccomp, abi: Abi) -> Option<u32> {
    let mut max = 0;
    for rule in spec.syscalls().iter().flatten() {
        for name in rule.names() {
            if abi == Abi::X86 && multiplexed(name).is_some() {
                continue;
            }
            if let Some(n) = abi.syscall(name) {
                max = max.max(n);
            }
        }
    }
    (max != 0).then_some(max)
}

/// The rules (conditions, action) for call `nr` on `abi`, merged as libseccomp does.
fn rules_for(spec: &LinuxSeccomp, abi: Abi, nr: u32, default: u32) -> Vec<(Vec<RefCond>, u32)> {
    let narrow = matches!(abi, Abi::X86 | Abi::X32);
    let mut kept: Vec<(Vec<RefCond>, u32)> = Vec::new();
    for rule in spec.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret());
        if act == default {
            continue;
        }
        let args = rule.args().clone().unwrap_or_default();
        let mut seen = [0; 6];
        for a in &args {
            seen[a.index()] += 1;
        }
        let groups: Vec<Vec<LinuxSeccompArg>> = if seen.iter().any(|&n| n > 1) {
            args.iter().map(|a| vec![*a]).collect()
        } else {
            vec![args.clone()]
        };
        for name in rule.names() {
            let mut hits: Vec<Option<u32>> = Vec::new();
            if abi.syscall(name) == Some(nr) {
                hits.push(None);
            }
            if abi == Abi::X86 {
                if let Some((mux, sub)) = multiplexed(name) {
                    if mux == nr {
                        hits.push(Some(sub));
                    }
                }
            }
            for hit in hits {
                for group in &groups {
                    let mut conds: Vec<RefCond> = group
                        .iter()
                        .filter_map(|a| RefCond::from(a, narrow))
                        .collect();
                    if let Some(sub) = hit {
                        conds.retain(|c| c.index != 0);
                        conds.push(RefCond {
                            index: 0,
                            op: LinuxSeccompOperator::ScmpCmpEq,
                            value: u64::from(sub),
                            mask: if narrow { 0xffff_ffff } else { u64::MAX },
                        });
                    }
                    if kept.iter().any(|(k, _)| contains_all(&conds, k)) {
                        continue;
                    }
                    kept.retain(|(k, _)| !contains_all(k, &conds));
                    kept.push((conds, act));
                }
            }
        }
    }
    kept
}

fn decide(spec: &LinuxSeccomp, abi: Abi, nr: u32, args: &[u64; 6], default: u32) -> u32 {
    for (conds, act) in rules_for(spec, abi, nr, default) {
        if conds.iter().all(|c| c.holds(args)) {
            return act;
        }
    }
    default
}

/// What runc's filter returns for `d` under `spec`.
pub fn reference(spec: &LinuxSeccomp, d: &SeccompData) -> u32 {
    let default = action(spec.default_action(), spec.default_errno_ret());
    let abis = listed(spec);
    let has = |a| abis.contains(&a);
    let nr = d.nr as u32;
    let stub = !matches!(
        spec.default_action(),
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    let enosys = RET_ERRNO | 38;
    match d.arch {
        AUDIT_ARCH_X86_64 => {
            if stub {
                let abi = if nr & X32_SYSCALL_BIT != 0 {
                    Abi::X32
                } else {
                    Abi::X86_64
                };
                if has(abi) {
                    if let Some(max) = largest(spec, abi) {
                        if nr > max {
                            return enosys;
                        }
                    }
                }
            }
            if has(Abi::X32) {
                let abi = if nr < X32_SYSCALL_BIT {
                    Abi::X86_64
                } else {
                    Abi::X32
                };
                decide(spec, abi, nr, &d.args, default)
            } else if nr >= X32_SYSCALL_BIT {
                if nr == u32::MAX {
                    default
                } else {
                    RET_KILL_THREAD
                }
            } else {
                decide(spec, Abi::X86_64, nr, &d.args, default)
            }
        }
        AUDIT_ARCH_I386 if has(Abi::X86) => {
            if stub {
                if let Some(max) = largest(spec, Abi::X86) {
                    if nr > max {
                        return enosys;
                    }
                }
            }
            decide(spec, Abi::X86, nr, &d.args, default)
        }
        _ => RET_KILL_THREAD,
    }
}

/// Silences "unused" for constants some test files do not use.
pub const USED: [u32; 3] = [RET_ALLOW, RET_LOG, RET_TRACE];

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}
