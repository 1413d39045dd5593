//! The cgroup v2 device controller: a `BPF_PROG_TYPE_CGROUP_DEVICE` program built from the
//! device rules, and its attachment to a cgroup (replacing the one fluke attached before).
//!
//! The program sees `struct bpf_cgroup_dev_ctx { u32 access_type; u32 major; u32 minor; }`
//! where `access_type` is `(access << 16) | type` (type 1 block, 2 char; access bits m=1,
//! r=2, w=4) and returns 1 to allow, 0 to deny. Like runc's device filter it walks the rules
//! from the last to the first, so the last matching rule wins; unlike a whole-rule match it
//! decides each requested access bit separately: a register holds the bits still undecided, an
//! allow rule that matches the device clears its bits (all cleared: allow), a deny rule that
//! matches the device and one of the undecided bits denies. A type `a` rule resets everything,
//! so rules before the last one are never reached and are not emitted; that rule (deny-all if
//! there is none) gives the answer for bits no later rule decided.

use std::ffi::CStr;
use std::os::fd::{AsFd, BorrowedFd};

use sys::bpf::{self, Insn};

use super::{Access, DeviceKind, DeviceRule};

/// The license string the program is loaded with (no GPL-only helper is called).
pub const LICENSE: &CStr = c"Apache";

// Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const MOV64_X: u8 = 0xbf; // BPF_ALU64 | BPF_MOV | BPF_X
const MOV64_K: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
const AND32_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const RSH32_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const JEQ_K: u8 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers: r1 context; r2 type; r3 undecided access bits; r4 major; r5 minor; r6 scratch.
const R0: u8 = 0;
const R1: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;
const SCRATCH: u8 = 6;

// BPF_DEVCG_DEV_*
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;

fn ret(allow: bool) -> [Insn; 2] {
    [
        Insn::new(MOV64_K, R0, 0, 0, i32::from(allow)),
        Insn::new(EXIT, 0, 0, 0, 0),
    ]
}

/// The instructions that enforce `rules` (see the module docs for the semantics).
pub fn program(rules: &[DeviceRule]) -> Vec<Insn> {
    let mut p = vec![
        Insn::new(LDX_MEM_W, TYPE, R1, 0, 0),
        Insn::new(MOV64_X, ACCESS, TYPE, 0, 0),
        Insn::new(RSH32_K, ACCESS, 0, 0, 16),
        Insn::new(AND32_K, TYPE, 0, 0, 0xffff),
        Insn::new(LDX_MEM_W, MAJOR, R1, 4, 0),
        Insn::new(LDX_MEM_W, MINOR, R1, 8, 0),
    ];
    // Only the rules after the last reset matter; the reset gives the default.
    let start = rules.iter().rposition(|r| r.kind == DeviceKind::All);
    let default_allow = start.is_some_and(|i| rules[i].allow);
    let live = &rules[start.map_or(0, |i| i + 1)..];
    for r in live.iter().rev() {
        if r.access.is_empty() {
            continue;
        }
        let mut checks: Vec<(u8, i32)> = Vec::new();
        checks.push((
            TYPE,
            if r.kind == DeviceKind::Block {
                DEV_BLOCK
            } else {
                DEV_CHAR
            },
        ));
        if let Some(m) = r.major {
            checks.push((MAJOR, m as i32));
        }
        if let Some(m) = r.minor {
            checks.push((MINOR, m as i32));
        }
        let action: Vec<Insn> = match (r.allow, r.access == Access::ALL) {
            // Every bit decided by this rule: answer at once.
            (allow, true) => ret(allow).to_vec(),
            (false, false) => {
                let mut v = vec![
                    Insn::new(MOV64_X, SCRATCH, ACCESS, 0, 0),
                    Insn::new(AND32_K, SCRATCH, 0, 0, i32::from(r.access.0)),
                    Insn::new(JEQ_K, SCRATCH, 0, 2, 0),
                ];
                v.extend(ret(false));
                v
            }
            (true, false) => {
                let mut v = vec![
                    Insn::new(AND32_K, ACCESS, 0, 0, !i32::from(r.access.0)),
                    Insn::new(JNE_K, ACCESS, 0, 2, 0),
                ];
                v.extend(ret(true));
                v
            }
        };
        let len = checks.len() + action.len();
        for (k, (reg, imm)) in checks.iter().enumerate() {
            // Jump over the rest of this rule's block when the device differs.
            p.push(Insn::new(JNE_K, *reg, 0, (len - k - 1) as i16, *imm));
        }
        p.extend(action);
    }
    p.extend(ret(default_allow));
    p
}

/// Loads the program for `rules` and makes it the device filter of the cgroup open at
/// `cgroup`: the new program is attached (`BPF_F_ALLOW_MULTI`) before the ones already
/// attached there are detached, so no device is allowed in between that both forbid.
pub fn apply(cgroup: BorrowedFd<'_>, rules: &[DeviceRule]) -> Result<(), ApplyError> {
    let insns = program(rules);
    let prog = bpf::load_cgroup_device_program(&insns, LICENSE, "fluke_devices")
        .map_err(|e| ApplyError::Load(Box::new(e)))?;
    let (old, _flags) = bpf::query_cgroup_device(cgroup).map_err(ApplyError::Query)?;
    bpf::attach_cgroup_device(cgroup, prog.as_fd(), bpf::BPF_F_ALLOW_MULTI, None)
        .map_err(ApplyError::Attach)?;
    for id in old {
        match bpf::prog_fd_by_id(id) {
            Ok(fd) => bpf::detach_cgroup_device(cgroup, fd.as_fd()).map_err(ApplyError::Detach)?,
            // Detached and freed meanwhile.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {}
            Err(e) => return Err(ApplyError::Detach(e)),
        }
    }
    Ok(())
}

/// Which step of [`apply`] failed.
#[derive(Debug)]
pub enum ApplyError {
    Load(Box<bpf::LoadError>),
    Query(std::io::Error),
    Attach(std::io::Error),
    Detach(std::io::Error),
}

impl ApplyError {
    /// The bpf command that failed, for error messages.
    pub fn step(&self) -> &'static str {
        match self {
            ApplyError::Load(_) => "bpf(BPF_PROG_LOAD)",
            ApplyError::Query(_) => "bpf(BPF_PROG_QUERY)",
            ApplyError::Attach(_) => "bpf(BPF_PROG_ATTACH)",
            ApplyError::Detach(_) => "bpf(BPF_PROG_DETACH)",
        }
    }

    pub(crate) fn into_source(self) -> Box<dyn std::error::Error + Send + Sync> {
        match self {
            ApplyError::Load(e) => e,
            ApplyError::Query(e) | ApplyError::Attach(e) | ApplyError::Detach(e) => Box::new(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::tests::rule;
    use DeviceKind::{All, Block, Char};

    /// A tiny interpreter for the instructions the emitter uses, to check what a program
    /// decides without a kernel.
    fn run(p: &[Insn], dev_type: u32, major: u32, minor: u32, access: u8) -> bool {
        let ctx = [(u32::from(access) << 16) | dev_type, major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        for _ in 0..10_000 {
            let i = p[pc];
            let (d, s) = (i.dst() as usize, i.src() as usize);
            pc += 1;
            match i.code {
                LDX_MEM_W => {
                    assert_eq!(s, 1);
                    r[d] = u64::from(ctx[(i.off / 4) as usize]);
                }
                MOV64_X => r[d] = r[s],
                MOV64_K => r[d] = i.imm as i64 as u64,
                AND32_K => r[d] = u64::from((r[d] as u32) & (i.imm as u32)),
                RSH32_K => r[d] = u64::from((r[d] as u32) >> i.imm),
                JEQ_K | JNE_K => {
                    let eq = r[d] == i.imm as i64 as u64;
                    if eq == (i.code == JEQ_K) {
                        pc = (pc as i64 + i64::from(i.off)) as usize;
                    }
                }
                EXIT => {
                    assert!(r[0] <= 1);
                    return r[0] == 1;
                }
                c => panic!("unexpected opcode {c:#x}"),
            }
        }
        panic!("program did not exit");
    }

    const R: u8 = 2;
    const W: u8 = 4;
    const M: u8 = 1;
    const CHR: u32 = 2;
    const BLK: u32 = 1;

    #[test]
    fn empty_list_denies_everything() {
        let p = program(&[]);
        assert_eq!(p.len(), 8);
        assert_eq!(p[6], Insn::new(MOV64_K, 0, 0, 0, 0));
        assert!(!run(&p, CHR, 1, 3, R));
    }

    #[test]
    fn shape_of_a_typical_list() {
        let rules = [
            rule(false, All, None, None, "rwm"),
            rule(true, Char, Some(1), Some(3), "rwm"),
            rule(true, Char, Some(5), Some(2), "r"),
        ];
        let p = program(&rules);
        // prologue 6, last rule (3 checks + 4), middle rule (3 checks + 2), default 2
        assert_eq!(p.len(), 6 + 7 + 5 + 2);
        // The last rule is emitted first: type, major, minor, then its action.
        assert_eq!(p[6], Insn::new(JNE_K, TYPE, 0, 6, DEV_CHAR));
        assert_eq!(p[7], Insn::new(JNE_K, MAJOR, 0, 5, 5));
        assert_eq!(p[8], Insn::new(JNE_K, MINOR, 0, 4, 2));
        assert_eq!(p[9], Insn::new(AND32_K, ACCESS, 0, 0, !2));
        assert_eq!(p[13], Insn::new(JNE_K, TYPE, 0, 4, DEV_CHAR));
        assert_eq!(p[15], Insn::new(JNE_K, MINOR, 0, 2, 3));
        assert_eq!(&p[16..18], &ret(true));
        assert_eq!(&p[18..], &ret(false));
        // Every jump lands inside the program.
        for (i, insn) in p.iter().enumerate() {
            if matches!(insn.code, JEQ_K | JNE_K) {
                assert!(i + 1 + (insn.off as usize) < p.len());
            }
        }
    }

    #[test]
    fn semantics() {
        let rules = [
            rule(false, All, None, None, ""),
            rule(true, Char, None, None, "m"),
            rule(true, Block, None, None, "m"),
            rule(true, Char, Some(1), Some(3), "rwm"),
            rule(false, Char, Some(1), Some(3), "w"),
            rule(true, Char, Some(136), None, "rw"),
        ];
        let p = program(&rules);
        assert!(run(&p, CHR, 1, 3, R));
        assert!(!run(&p, CHR, 1, 3, W));
        assert!(
            !run(&p, CHR, 1, 3, R | W),
            "a denied bit denies the request"
        );
        assert!(run(&p, CHR, 1, 3, M));
        assert!(run(&p, CHR, 9, 9, M));
        assert!(run(&p, BLK, 8, 0, M));
        assert!(!run(&p, BLK, 8, 0, R));
        assert!(run(&p, CHR, 136, 7, R | W));
        assert!(run(&p, CHR, 136, 7, R | W | M), "m comes from c *:* m");
        assert!(!run(&p, CHR, 5, 0, R));
    }

    #[test]
    fn bits_are_decided_separately_and_last_match_wins() {
        // r and w allowed by different rules: a read-write open is allowed.
        let split = [
            rule(true, Char, Some(1), None, "r"),
            rule(true, Char, None, Some(3), "w"),
        ];
        let p = program(&split);
        assert!(run(&p, CHR, 1, 3, R | W));
        assert!(!run(&p, CHR, 1, 4, R | W));
        // A later allow overrides an earlier deny and vice versa.
        let p = program(&[
            rule(false, Char, Some(1), Some(3), "rw"),
            rule(true, Char, Some(1), Some(3), "r"),
        ]);
        assert!(run(&p, CHR, 1, 3, R));
        assert!(!run(&p, CHR, 1, 3, W));
        // Hole punching, refused on v1, works here.
        let p = program(&[
            rule(true, All, None, None, ""),
            rule(false, Char, Some(1), None, "w"),
            rule(true, Char, Some(1), Some(3), "w"),
        ]);
        assert!(run(&p, CHR, 1, 3, W));
        assert!(!run(&p, CHR, 1, 5, W));
        assert!(run(&p, CHR, 1, 5, R));
        assert!(run(&p, BLK, 1, 5, W));
    }

    #[test]
    fn resets_cut_the_program() {
        let rules = [
            rule(true, Char, Some(1), Some(3), "rwm"),
            rule(true, All, None, None, "r"),
        ];
        let p = program(&rules);
        assert_eq!(
            p.len(),
            8,
            "allow-all with nothing after it: prologue and 'allow'"
        );
        assert!(run(&p, BLK, 8, 0, W));
        let rules = [
            rule(true, All, None, None, ""),
            rule(false, Block, None, None, "w"),
            rule(false, All, None, None, ""),
        ];
        let p = program(&rules);
        assert!(!run(&p, CHR, 1, 3, R));
    }
}
