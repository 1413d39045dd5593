//! From an OCI `linux.seccomp` section to per-ABI rule sets, with runc's semantics
//! (runc hands the profile to libseccomp, then prepends its own -ENOSYS stub):
//!
//! - actions: `SCMP_ACT_KILL` is KILL_THREAD; ERRNO and TRACE carry `errnoRet`, EPERM by
//!   default; a rule whose action equals the default action is dropped;
//! - the native ABI is always filtered, listed ABIs are added; any other `arch` gets
//!   libseccomp's bad-architecture action, KILL_THREAD (runc never changes it);
//! - names resolve per ABI and are skipped where an ABI lacks them; i386 also gets the
//!   `socketcall`/`ipc` multiplexed form of socket and SysV IPC calls;
//! - conditions of one rule are ANDed, unless two name the same argument: then runc adds
//!   each condition as a rule of its own (ORed); rules of one system call are ORed;
//! - a rule whose conditions include all of another's adds nothing, and it replaces the
//!   rules whose conditions include all of its own (libseccomp keeps the most inclusive
//!   chain; an unconditional rule therefore wins over every conditional one); among
//!   overlapping rules with different actions that neither contains, the first listed
//!   wins (libseccomp orders by argument index instead: profiles avoid such overlaps);
//! - on i386 and x32 only the low 32 bits of arguments and values are compared;
//! - unless the default action lets calls through (ALLOW, LOG, TRACE), system calls
//!   numbered above the largest one the profile names get ERRNO(ENOSYS), so that newer
//!   C libraries fall back to older calls instead of failing with EPERM.

use std::collections::{BTreeMap, BTreeSet};

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg, LinuxSeccompFilterFlag,
    LinuxSeccompOperator,
};

use crate::arch::{self, Abi, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64, X32_SYSCALL_BIT};
use crate::error::{Error, Warning};

/// `SECCOMP_RET_KILL_PROCESS`.
pub const RET_KILL_PROCESS: u32 = 0x8000_0000;
/// `SECCOMP_RET_KILL_THREAD` (also `SCMP_ACT_KILL`).
pub const RET_KILL_THREAD: u32 = 0;
/// `SECCOMP_RET_TRAP`: deliver `SIGSYS`.
pub const RET_TRAP: u32 = 0x0003_0000;
/// `SECCOMP_RET_ERRNO`; the low 16 bits are the errno.
pub const RET_ERRNO: u32 = 0x0005_0000;
/// `SECCOMP_RET_USER_NOTIF`: ask the listener's owner.
pub const RET_USER_NOTIF: u32 = 0x7fc0_0000;
/// `SECCOMP_RET_TRACE`; the low 16 bits go to the tracer.
pub const RET_TRACE: u32 = 0x7ff0_0000;
/// `SECCOMP_RET_LOG`: allow and log.
pub const RET_LOG: u32 = 0x7ffc_0000;
/// `SECCOMP_RET_ALLOW`.
pub const RET_ALLOW: u32 = 0x7fff_0000;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;
/// What the -ENOSYS stub returns.
pub(crate) const RET_ENOSYS: u32 = RET_ERRNO | ENOSYS;

/// The seccomp return value of an OCI action; `errno_ret` feeds ERRNO and TRACE (EPERM if
/// absent, as runc does) and is ignored by the others. `Err` carries an `errno_ret` that
/// does not fit in the 16-bit data field.
pub fn action_value(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<u32, u32> {
    use LinuxSeccompAction as A;
    let data = || match errno_ret {
        None => Ok(EPERM),
        Some(v) if v <= 0xffff => Ok(v),
        Some(v) => Err(v),
    };
    Ok(match action {
        A::ScmpActKill | A::ScmpActKillThread => RET_KILL_THREAD,
        A::ScmpActKillProcess => RET_KILL_PROCESS,
        A::ScmpActTrap => RET_TRAP,
        A::ScmpActErrno => RET_ERRNO | data()?,
        A::ScmpActTrace => RET_TRACE | data()?,
        A::ScmpActAllow => RET_ALLOW,
        A::ScmpActLog => RET_LOG,
        A::ScmpActNotify => RET_USER_NOTIF,
    })
}

fn takes_data(action: LinuxSeccompAction) -> bool {
    matches!(
        action,
        LinuxSeccompAction::ScmpActErrno | LinuxSeccompAction::ScmpActTrace
    )
}

/// A comparison operator, after normalisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Op {
    Ne,
    Lt,
    Le,
    Eq,
    Ge,
    Gt,
    /// `(arg & mask) == value`, with `value` already masked.
    MaskedEq,
}

/// One argument condition, normalised for an ABI (values truncated to 32 bits on 32-bit
/// ABIs; for MASKED_EQ the value is masked and `mask` is the mask, else `mask` is unused).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Cond {
    pub index: u8,
    pub op: Op,
    pub value: u64,
    pub mask: u64,
}

impl Cond {
    /// Normalises `arg` for an ABI; `None` for a tautology (MASKED_EQ with a zero mask),
    /// which libseccomp drops.
    fn new(arg: &LinuxSeccompArg, is_32bit: bool) -> Option<Cond> {
        let width = if is_32bit { 0xffff_ffff } else { u64::MAX };
        let index = u8::try_from(arg.index()).ok()?;
        let (op, value, mask) = match arg.op() {
            LinuxSeccompOperator::ScmpCmpNe => (Op::Ne, arg.value(), u64::MAX),
            LinuxSeccompOperator::ScmpCmpLt => (Op::Lt, arg.value(), u64::MAX),
            LinuxSeccompOperator::ScmpCmpLe => (Op::Le, arg.value(), u64::MAX),
            LinuxSeccompOperator::ScmpCmpEq => (Op::Eq, arg.value(), u64::MAX),
            LinuxSeccompOperator::ScmpCmpGe => (Op::Ge, arg.value(), u64::MAX),
            LinuxSeccompOperator::ScmpCmpGt => (Op::Gt, arg.value(), u64::MAX),
            // OCI (like libseccomp's SCMP_CMP_MASKED_EQ) puts the mask in `value` and the
            // datum in `valueTwo`.
            LinuxSeccompOperator::ScmpCmpMaskedEq => {
                (Op::MaskedEq, arg.value_two().unwrap_or(0), arg.value())
            }
        };
        let mask = mask & width;
        if op == Op::MaskedEq {
            if mask == 0 {
                return None;
            }
            return Some(Cond {
                index,
                op,
                value: value & mask,
                mask,
            });
        }
        Some(Cond {
            index,
            op,
            value: value & width,
            mask: width,
        })
    }

    fn eq(index: u8, value: u64) -> Cond {
        Cond {
            index,
            op: Op::Eq,
            value,
            mask: u64::MAX,
        }
    }

    /// Whether the condition holds for argument value `arg` (exposed for tests).
    #[cfg(test)]
    pub fn holds(&self, arg: u64) -> bool {
        let a = arg
            & if self.op == Op::MaskedEq {
                u64::MAX
            } else {
                self.mask
            };
        match self.op {
            Op::Ne => a != self.value,
            Op::Lt => a < self.value,
            Op::Le => a <= self.value,
            Op::Eq => a == self.value,
            Op::Ge => a >= self.value,
            Op::Gt => a > self.value,
            Op::MaskedEq => a & self.mask == self.value,
        }
    }
}

/// One rule of one system call on one ABI: all of `conds` (sorted, none repeated) must
/// hold for `action`; no conditions means always.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Rule {
    pub conds: Vec<Cond>,
    pub action: u32,
}

fn is_subset(a: &[Cond], b: &[Cond]) -> bool {
    a.iter().all(|c| b.contains(c))
}

/// Adds `new` to the rules of one system call the way libseccomp merges chains: a rule
/// containing all conditions of one already there adds nothing; otherwise those whose
/// conditions contain all of the new rule's are replaced by it.
fn insert(rules: &mut Vec<Rule>, new: Rule) {
    if rules.iter().any(|r| is_subset(&r.conds, &new.conds)) {
        return;
    }
    rules.retain(|r| !is_subset(&new.conds, &r.conds));
    rules.push(new);
}

/// The rules of one ABI.
#[derive(Clone, Debug)]
pub(crate) struct AbiPlan {
    pub abi: Abi,
    /// By system call number (x32 numbers carry bit 30).
    pub syscalls: BTreeMap<u32, Vec<Rule>>,
    /// The largest system call number the profile names here, when the -ENOSYS stub
    /// applies to this ABI.
    pub stub_max: Option<u32>,
}

/// What the filter does for a given `(arch, nr)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome<'a> {
    /// Return this value whatever the arguments.
    Ret(u32),
    /// Evaluate these rules (in order; the first whose conditions all hold decides),
    /// falling back to the default action; `is_32bit` tells how to compare arguments.
    Rules {
        nr: u32,
        rules: &'a [Rule],
        is_32bit: bool,
    },
}

/// A profile, resolved.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub default: u32,
    pub bad_arch: u32,
    /// In [`Abi::ALL`] order; always holds the native ABI.
    pub abis: Vec<AbiPlan>,
    /// Filter flags for seccomp(2), NEW_LISTENER included when a rule notifies.
    pub flags: u32,
    /// Flags to drop silently when the kernel does not know them.
    pub optional_flags: u32,
    pub listener: bool,
    pub warnings: Vec<Warning>,
}

impl Plan {
    fn abi(&self, abi: Abi) -> Option<&AbiPlan> {
        self.abis.iter().find(|p| p.abi == abi)
    }

    /// The `seccomp_data.arch` values the filter dispatches on, in order.
    pub fn audit_arches(&self) -> Vec<u32> {
        let mut out: Vec<u32> = Vec::new();
        for p in &self.abis {
            if !out.contains(&p.abi.audit_arch()) {
                out.push(p.abi.audit_arch());
            }
        }
        out
    }

    fn lookup<'a>(&'a self, p: &'a AbiPlan, nr: u32) -> Outcome<'a> {
        match p.syscalls.get(&nr) {
            None => Outcome::Ret(self.default),
            Some(rules) if rules.len() == 1 && rules[0].conds.is_empty() => {
                Outcome::Ret(rules[0].action)
            }
            Some(rules) => Outcome::Rules {
                nr,
                rules,
                is_32bit: p.abi.is_32bit(),
            },
        }
    }

    /// The filter's behaviour for system call `nr` under `arch`: the semantics the code
    /// generator turns into BPF. It only compares `nr` with the numbers in
    /// [`Plan::breakpoints`], so it is constant between two consecutive ones.
    pub fn outcome(&self, arch: u32, nr: u32) -> Outcome<'_> {
        let stub = |p: Option<&AbiPlan>| p.and_then(|p| p.stub_max).is_some_and(|max| nr > max);
        match arch {
            AUDIT_ARCH_X86_64 => {
                let (x64, x32) = (self.abi(Abi::X86_64), self.abi(Abi::X32));
                // runc's stub tells the ABIs apart by bit 30 alone.
                if stub(if nr & X32_SYSCALL_BIT != 0 { x32 } else { x64 }) {
                    return Outcome::Ret(RET_ENOSYS);
                }
                // libseccomp's ABI check: with only one of the two ABIs in the filter,
                // calls of the other get the bad-architecture action; x86_64 lets the -1
                // a tracer uses to skip a call through to the default action.
                match (x64, x32) {
                    (Some(p64), Some(_)) if p64.syscalls.contains_key(&nr) => self.lookup(p64, nr),
                    (Some(_), Some(p32)) => self.lookup(p32, nr),
                    (Some(p), None) if nr < X32_SYSCALL_BIT => self.lookup(p, nr),
                    (Some(_), None) if nr == u32::MAX => Outcome::Ret(self.default),
                    (None, Some(p)) if nr >= X32_SYSCALL_BIT => self.lookup(p, nr),
                    _ => Outcome::Ret(self.bad_arch),
                }
            }
            AUDIT_ARCH_I386 => match self.abi(Abi::X86) {
                Some(p) if stub(Some(p)) => Outcome::Ret(RET_ENOSYS),
                Some(p) => self.lookup(p, nr),
                None => Outcome::Ret(self.bad_arch),
            },
            _ => Outcome::Ret(self.bad_arch),
        }
    }

    /// Every system call number where [`Plan::outcome`] may change for `arch`, sorted,
    /// starting with 0.
    pub fn breakpoints(&self, arch: u32) -> Vec<u32> {
        let mut points: BTreeSet<u64> = [0, 1, 2, 3]
            .iter()
            .map(|q| q * u64::from(X32_SYSCALL_BIT))
            .collect();
        points.insert(u64::from(u32::MAX));
        for p in self.abis.iter().filter(|p| p.abi.audit_arch() == arch) {
            for &nr in p.syscalls.keys() {
                points.insert(u64::from(nr));
                points.insert(u64::from(nr) + 1);
            }
            if let Some(max) = p.stub_max {
                points.insert(u64::from(max) + 1);
            }
        }
        points
            .into_iter()
            .filter_map(|p| u32::try_from(p).ok())
            .collect()
    }
}

fn names(rule: &oci_spec::runtime::LinuxSyscall) -> String {
    rule.names().join(",")
}

/// Resolves `spec` for the running host.
pub(crate) fn plan(spec: &LinuxSeccomp) -> Result<Plan, Error> {
    let native = Abi::native().ok_or(Error::UnsupportedHost(std::env::consts::ARCH))?;
    let mut warnings = Vec::new();

    let default_action = spec.default_action();
    if default_action == LinuxSeccompAction::ScmpActNotify {
        return Err(Error::NotifyDefault);
    }
    let default = action_value(default_action, spec.default_errno_ret())
        .map_err(|value| Error::DefaultErrnoRet { value })?;
    if spec.default_errno_ret().is_some() && !takes_data(default_action) {
        warnings.push(Warning::ErrnoRetIgnored { rule: None });
    }

    let mut abis = BTreeSet::from([native]);
    for arch in spec.architectures().iter().flatten() {
        let abi = match arch {
            Arch::ScmpArchNative => native,
            Arch::ScmpArchX86_64 => Abi::X86_64,
            Arch::ScmpArchX86 => Abi::X86,
            Arch::ScmpArchX32 => Abi::X32,
            other => {
                let warning = Warning::IgnoredArch {
                    arch: other.to_string(),
                };
                if !warnings.contains(&warning) {
                    warnings.push(warning);
                }
                continue;
            }
        };
        abis.insert(abi);
    }
    let stub = !matches!(
        default_action,
        LinuxSeccompAction::ScmpActAllow
            | LinuxSeccompAction::ScmpActLog
            | LinuxSeccompAction::ScmpActTrace
    );
    let mut abi_plans: Vec<AbiPlan> = Abi::ALL
        .iter()
        .filter(|abi| abis.contains(abi))
        .map(|&abi| AbiPlan {
            abi,
            syscalls: BTreeMap::new(),
            stub_max: None,
        })
        .collect();

    // runc: no `flags` at all means SPEC_ALLOW (when the kernel has it); an explicit list,
    // even empty, is taken as is.
    let (mut flags, mut optional_flags) = match spec.flags() {
        None => (
            sys::seccomp::FILTER_FLAG_SPEC_ALLOW,
            sys::seccomp::FILTER_FLAG_SPEC_ALLOW,
        ),
        Some(list) => (
            list.iter().fold(0, |acc, flag| {
                acc | match flag {
                    LinuxSeccompFilterFlag::SeccompFilterFlagLog => sys::seccomp::FILTER_FLAG_LOG,
                    LinuxSeccompFilterFlag::SeccompFilterFlagTsync => {
                        sys::seccomp::FILTER_FLAG_TSYNC
                    }
                    LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => {
                        sys::seccomp::FILTER_FLAG_SPEC_ALLOW
                    }
                    LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => {
                        sys::seccomp::FILTER_FLAG_WAIT_KILLABLE_RECV
                    }
                }
            }),
            sys::seccomp::FILTER_FLAG_WAIT_KILLABLE_RECV,
        ),
    };

    let mut listener = false;
    for (i, rule) in spec.syscalls().iter().flatten().enumerate() {
        let action =
            action_value(rule.action(), rule.errno_ret()).map_err(|value| Error::ErrnoRet {
                rule: i,
                value,
                syscall: names(rule),
            })?;
        if rule.errno_ret().is_some() && !takes_data(rule.action()) {
            warnings.push(Warning::ErrnoRetIgnored { rule: Some(i) });
        }
        let args: &[LinuxSeccompArg] = rule.args().as_deref().unwrap_or(&[]);
        let mut per_index = [0usize; 6];
        for (j, arg) in args.iter().enumerate() {
            match per_index.get_mut(arg.index()) {
                Some(count) => *count += 1,
                None => {
                    return Err(Error::ArgIndex {
                        rule: i,
                        arg: j,
                        index: arg.index(),
                        syscall: names(rule),
                    })
                }
            }
        }
        if rule.action() == LinuxSeccompAction::ScmpActNotify {
            if rule.names().iter().any(|n| n == "write") {
                return Err(Error::NotifyWrite { rule: i });
            }
            listener = true;
        }
        // runc: one condition per rule when an argument is named twice.
        let groups: Vec<&[LinuxSeccompArg]> = if per_index.iter().any(|&n| n > 1) {
            args.chunks(1).collect()
        } else {
            vec![args]
        };

        for (n, name) in rule.names().iter().enumerate() {
            if name.is_empty() {
                return Err(Error::EmptyName { rule: i, name: n });
            }
            if stub {
                for p in &mut abi_plans {
                    if let Some(nr) = p.abi.number_for_stub(name) {
                        p.stub_max = Some(p.stub_max.map_or(nr, |max: u32| max.max(nr)));
                    }
                }
            }
            if action == default {
                continue;
            }
            if !arch::known_anywhere(name) {
                warnings.push(Warning::UnknownSyscall {
                    rule: i,
                    name: name.clone(),
                });
                continue;
            }
            for p in &mut abi_plans {
                for target in p.abi.targets(name) {
                    for group in &groups {
                        let mut conds: Vec<Cond> = group
                            .iter()
                            .filter_map(|arg| Cond::new(arg, p.abi.is_32bit()))
                            .collect();
                        if let Some(sub) = target.mux {
                            conds.retain(|c| c.index != 0);
                            conds.push(Cond::eq(0, u64::from(sub)));
                        }
                        conds.sort();
                        conds.dedup();
                        insert(
                            p.syscalls.entry(target.nr).or_default(),
                            Rule { conds, action },
                        );
                    }
                }
            }
        }
    }
    // runc keeps no stub for an ABI whose largest call is number 0 (or that has none).
    for p in &mut abi_plans {
        p.stub_max = p.stub_max.filter(|&max| max != 0);
    }

    if listener {
        flags |= sys::seccomp::FILTER_FLAG_NEW_LISTENER;
        if flags & sys::seccomp::FILTER_FLAG_TSYNC != 0 {
            flags |= sys::seccomp::FILTER_FLAG_TSYNC_ESRCH;
        }
    } else if flags & sys::seccomp::FILTER_FLAG_WAIT_KILLABLE_RECV != 0 {
        flags &= !sys::seccomp::FILTER_FLAG_WAIT_KILLABLE_RECV;
        warnings.push(Warning::WaitKillableWithoutListener);
    }
    optional_flags &= flags;

    Ok(Plan {
        default,
        bad_arch: RET_KILL_THREAD,
        abis: abi_plans,
        flags,
        optional_flags,
        listener,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(index: u8, op: Op, value: u64) -> Cond {
        Cond {
            index,
            op,
            value,
            mask: u64::MAX,
        }
    }

    #[test]
    fn the_more_inclusive_rule_wins_whatever_the_order() {
        let narrow = Rule {
            conds: vec![cond(0, Op::Eq, 1), cond(1, Op::Eq, 2)],
            action: RET_ALLOW,
        };
        let wide = Rule {
            conds: vec![cond(0, Op::Eq, 1)],
            action: RET_TRAP,
        };
        let always = Rule {
            conds: vec![],
            action: RET_LOG,
        };
        for order in [[&narrow, &wide], [&wide, &narrow]] {
            let mut rules = Vec::new();
            for r in order {
                insert(&mut rules, r.clone());
            }
            assert_eq!(rules, vec![wide.clone()]);
            insert(&mut rules, always.clone());
            assert_eq!(rules, vec![always.clone()]);
            insert(&mut rules, narrow.clone());
            assert_eq!(rules, vec![always.clone()]);
        }
    }

    #[test]
    fn conditions_normalise_per_width() {
        let arg = |op, value: u64, value_two: u64| {
            oci_spec::runtime::LinuxSeccompArgBuilder::default()
                .index(2usize)
                .op(op)
                .value(value)
                .value_two(value_two)
                .build()
                .unwrap()
        };
        let masked = arg(
            LinuxSeccompOperator::ScmpCmpMaskedEq,
            0xff_0000_00ff,
            0x12_3456_7812,
        );
        let c = Cond::new(&masked, false).unwrap();
        assert_eq!((c.value, c.mask), (0x12_0000_0012, 0xff_0000_00ff));
        let c = Cond::new(&masked, true).unwrap();
        assert_eq!((c.value, c.mask), (0x12, 0xff));
        let high_only = arg(LinuxSeccompOperator::ScmpCmpMaskedEq, 0xff_0000_0000, 0);
        assert!(Cond::new(&high_only, false).is_some());
        assert_eq!(Cond::new(&high_only, true), None);
        let gt = arg(LinuxSeccompOperator::ScmpCmpGt, 0x1_0000_0005, 0);
        assert!(Cond::new(&gt, false).unwrap().holds(0x1_0000_0006));
        assert!(!Cond::new(&gt, false).unwrap().holds(0x6));
        assert!(Cond::new(&gt, true).unwrap().holds(0x6));
    }
}
