//! From a resolved profile to BPF.
//!
//! Layout: load `arch` and compare it with each filtered `AUDIT_ARCH_*` (anything else
//! returns the bad-architecture action); each architecture's block loads `nr` and runs a
//! binary search over the intervals of system call numbers on which the filter behaves
//! the same (runs of allowed calls, gaps falling to the default action, the -ENOSYS range,
//! x32 and x86_64 halves), so a lookup costs about log2(intervals) jumps whatever the
//! profile's size. Intervals that depend on arguments lead to a chain of argument checks
//! per system call; the return instructions close each block.

use std::collections::BTreeMap;

use sys::seccomp::SockFilter;

use crate::asm::{Asm, Label, JMP_JEQ_K, JMP_JGE_K, JMP_JGT_K};
use crate::profile::{Cond, Op, Outcome, Plan, Rule};

/// `offsetof(struct seccomp_data, nr)`.
const OFF_NR: u32 = 0;
/// `offsetof(struct seccomp_data, arch)`.
const OFF_ARCH: u32 = 4;

/// Low word of argument `index` (little endian: the low word comes first).
fn arg_lo(index: u8) -> u32 {
    16 + 8 * u32::from(index)
}

pub(crate) fn generate(plan: &Plan, max_jump: u8) -> Vec<SockFilter> {
    let mut asm = Asm::default();
    let arches = plan.audit_arches();
    let blocks: Vec<Label> = arches.iter().map(|_| asm.label()).collect();
    asm.load(OFF_ARCH);
    for (&arch, &block) in arches.iter().zip(&blocks) {
        let next = asm.label();
        asm.jump(JMP_JEQ_K, arch, block, next);
        asm.mark(next);
    }
    asm.ret(plan.bad_arch);
    for (&arch, &block) in arches.iter().zip(&blocks) {
        asm.mark(block);
        arch_block(&mut asm, plan, arch);
    }
    asm.assemble(max_jump)
}

/// Return instructions of one block, shared by everything in it.
struct Rets(BTreeMap<u32, Label>);

impl Rets {
    fn get(&mut self, asm: &mut Asm, value: u32) -> Label {
        *self.0.entry(value).or_insert_with(|| asm.label())
    }
}

fn arch_block(asm: &mut Asm, plan: &Plan, arch: u32) {
    let mut intervals: Vec<(u32, Outcome<'_>)> = Vec::new();
    for start in plan.breakpoints(arch) {
        let outcome = plan.outcome(arch, start);
        if intervals.last().is_none_or(|(_, last)| *last != outcome) {
            intervals.push((start, outcome));
        }
    }

    let mut rets = Rets(BTreeMap::new());
    let mut chains: Vec<(Label, &[Rule], bool)> = Vec::new();
    let mut targets: Vec<Label> = Vec::with_capacity(intervals.len());
    for (_, outcome) in &intervals {
        targets.push(match *outcome {
            Outcome::Ret(value) => rets.get(asm, value),
            Outcome::Rules {
                rules, is_32bit, ..
            } => {
                let label = asm.label();
                chains.push((label, rules, is_32bit));
                label
            }
        });
    }
    let starts: Vec<u32> = intervals.iter().map(|(start, _)| *start).collect();

    if starts.len() == 1 {
        asm.ja(targets[0]);
    } else {
        asm.load(OFF_NR);
        search(asm, &starts, &targets, 0, starts.len() - 1);
    }
    let default = rets.get(asm, plan.default);
    for (label, rules, is_32bit) in chains {
        asm.mark(label);
        rule_chain(asm, &mut rets, rules, is_32bit, default);
    }
    for (value, label) in rets.0 {
        asm.mark(label);
        asm.ret(value);
    }
}

/// A binary search over intervals `lo..=hi` (`lo < hi`) with the number in A: each node
/// jumps to its right half when `nr >= start of the middle interval`. Subtrees are laid
/// out depth first, left before right, so every jump goes forward.
fn search(asm: &mut Asm, starts: &[u32], targets: &[Label], lo: usize, hi: usize) {
    let mid = (lo + hi).div_ceil(2);
    let left = if lo + 1 == mid {
        targets[lo]
    } else {
        asm.label()
    };
    let right = if mid == hi { targets[hi] } else { asm.label() };
    asm.jump(JMP_JGE_K, starts[mid], right, left);
    if lo + 1 < mid {
        asm.mark(left);
        search(asm, starts, targets, lo, mid - 1);
    }
    if mid < hi {
        asm.mark(right);
        search(asm, starts, targets, mid, hi);
    }
}

/// The rules of one system call, tried in order; none matching means `default`.
fn rule_chain(asm: &mut Asm, rets: &mut Rets, rules: &[Rule], is_32bit: bool, default: Label) {
    for (k, rule) in rules.iter().enumerate() {
        let fail = if k + 1 == rules.len() {
            default
        } else {
            asm.label()
        };
        let pass = rets.get(asm, rule.action);
        for (j, cond) in rule.conds.iter().enumerate() {
            let ok = if j + 1 == rule.conds.len() {
                pass
            } else {
                asm.label()
            };
            condition(asm, cond, is_32bit, ok, fail);
            if ok != pass {
                asm.mark(ok);
            }
        }
        if fail != default {
            asm.mark(fail);
        }
    }
}

/// One argument comparison: unsigned, on 64 bits as two 32-bit halves (high word first),
/// or on the low word alone for 32-bit ABIs.
fn condition(asm: &mut Asm, cond: &Cond, is_32bit: bool, pass: Label, fail: Label) {
    let lo = arg_lo(cond.index);
    let hi = lo + 4;
    match cond.op {
        Op::Eq => equal(asm, is_32bit, lo, cond.value, pass, fail),
        Op::Ne => equal(asm, is_32bit, lo, cond.value, fail, pass),
        Op::Gt => compare(asm, is_32bit, JMP_JGT_K, lo, cond.value, pass, fail),
        Op::Ge => compare(asm, is_32bit, JMP_JGE_K, lo, cond.value, pass, fail),
        Op::Le => compare(asm, is_32bit, JMP_JGT_K, lo, cond.value, fail, pass),
        Op::Lt => compare(asm, is_32bit, JMP_JGE_K, lo, cond.value, fail, pass),
        Op::MaskedEq => {
            let (v_hi, v_lo) = split(cond.value);
            let (m_hi, m_lo) = split(cond.mask);
            // A zero half of the mask compares nothing (and both zero never gets here).
            if !is_32bit && m_hi != 0 {
                let next = if m_lo != 0 { asm.label() } else { pass };
                asm.load(hi);
                if m_hi != u32::MAX {
                    asm.and(m_hi);
                }
                asm.jump(JMP_JEQ_K, v_hi, next, fail);
                if next != pass {
                    asm.mark(next);
                }
            }
            if m_lo != 0 {
                asm.load(lo);
                if m_lo != u32::MAX {
                    asm.and(m_lo);
                }
                asm.jump(JMP_JEQ_K, v_lo, pass, fail);
            }
        }
    }
}

fn split(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

fn equal(asm: &mut Asm, is_32bit: bool, lo: u32, value: u64, pass: Label, fail: Label) {
    let (v_hi, v_lo) = split(value);
    if !is_32bit {
        let next = asm.label();
        asm.load(lo + 4);
        asm.jump(JMP_JEQ_K, v_hi, next, fail);
        asm.mark(next);
    }
    asm.load(lo);
    asm.jump(JMP_JEQ_K, v_lo, pass, fail);
}

/// `arg > value` (`code` = JGT) or `arg >= value` (JGE): the high words decide unless
/// they are equal, then the low words do.
fn compare(
    asm: &mut Asm,
    is_32bit: bool,
    code: u16,
    lo: u32,
    value: u64,
    pass: Label,
    fail: Label,
) {
    let (v_hi, v_lo) = split(value);
    if !is_32bit {
        let (not_above, same_high) = (asm.label(), asm.label());
        asm.load(lo + 4);
        asm.jump(JMP_JGT_K, v_hi, pass, not_above);
        asm.mark(not_above);
        asm.jump(JMP_JEQ_K, v_hi, same_high, fail);
        asm.mark(same_high);
    }
    asm.load(lo);
    asm.jump(code, v_lo, pass, fail);
}
