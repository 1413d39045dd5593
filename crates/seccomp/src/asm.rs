//! A tiny classic-BPF assembler: instructions with symbolic forward jump targets, laid out
//! with long-jump trampolines where a conditional jump cannot reach (its offsets are 8-bit;
//! `BPF_JA` has 32 bits).

use sys::seccomp::SockFilter;

/// `BPF_LD | BPF_W | BPF_ABS`.
pub(crate) const LD_W_ABS: u16 = 0x20;
/// `BPF_ALU | BPF_AND | BPF_K`.
pub(crate) const ALU_AND_K: u16 = 0x54;
/// `BPF_JMP | BPF_JA`.
pub(crate) const JMP_JA: u16 = 0x05;
/// `BPF_JMP | BPF_JEQ | BPF_K`.
pub(crate) const JMP_JEQ_K: u16 = 0x15;
/// `BPF_JMP | BPF_JGT | BPF_K`.
pub(crate) const JMP_JGT_K: u16 = 0x25;
/// `BPF_JMP | BPF_JGE | BPF_K`.
pub(crate) const JMP_JGE_K: u16 = 0x35;
/// `BPF_RET | BPF_K`.
pub(crate) const RET_K: u16 = 0x06;

/// A position in the program, fixed when the assembler reaches its [`Asm::mark`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Label(usize);

#[derive(Clone, Copy, Debug)]
enum Item {
    Plain(SockFilter),
    /// A conditional jump; `far_*` once the target needs a trampoline.
    Cond {
        code: u16,
        k: u32,
        jt: Label,
        jf: Label,
        far_t: bool,
        far_f: bool,
    },
    Ja(Label),
    Mark(Label),
}

impl Item {
    fn size(&self) -> usize {
        match self {
            Item::Plain(_) | Item::Ja(_) => 1,
            Item::Cond { far_t, far_f, .. } => 1 + usize::from(*far_t) + usize::from(*far_f),
            Item::Mark(_) => 0,
        }
    }
}

/// A program under construction.
#[derive(Default)]
pub(crate) struct Asm {
    items: Vec<Item>,
    labels: usize,
}

impl Asm {
    pub fn label(&mut self) -> Label {
        self.labels += 1;
        Label(self.labels - 1)
    }

    /// Places `label` at the next instruction.
    pub fn mark(&mut self, label: Label) {
        self.items.push(Item::Mark(label));
    }

    pub fn load(&mut self, offset: u32) {
        self.plain(LD_W_ABS, offset);
    }

    pub fn and(&mut self, k: u32) {
        self.plain(ALU_AND_K, k);
    }

    pub fn ret(&mut self, k: u32) {
        self.plain(RET_K, k);
    }

    pub fn ja(&mut self, target: Label) {
        self.items.push(Item::Ja(target));
    }

    /// `if A <op> k goto jt else goto jf`, `code` one of the `JMP_*_K` constants.
    pub fn jump(&mut self, code: u16, k: u32, jt: Label, jf: Label) {
        if jt == jf {
            self.ja(jt);
            return;
        }
        self.items.push(Item::Cond {
            code,
            k,
            jt,
            jf,
            far_t: false,
            far_f: false,
        });
    }

    fn plain(&mut self, code: u16, k: u32) {
        self.items.push(Item::Plain(SockFilter {
            code,
            jt: 0,
            jf: 0,
            k,
        }));
    }

    /// Lays the program out. A conditional jump whose target lies more than `max_jump`
    /// instructions ahead gets a `BPF_JA` trampoline right after it (or a copy of the
    /// target, when that is a single `ret`); the layout is redone until every jump
    /// reaches. Panics on a backward or unplaced label: the generator never makes one.
    pub fn assemble(mut self, max_jump: u8) -> Vec<SockFilter> {
        let max_jump = usize::from(max_jump);
        let positions = loop {
            let positions = self.positions();
            let mut changed = false;
            let mut pc = 0;
            for item in &mut self.items {
                let size = item.size();
                if let Item::Cond {
                    jt,
                    jf,
                    far_t,
                    far_f,
                    ..
                } = item
                {
                    for (target, far) in [(*jt, far_t), (*jf, far_f)] {
                        if !*far && distance(&positions, pc, target) > max_jump {
                            *far = true;
                            changed = true;
                        }
                    }
                }
                pc += size;
            }
            if !changed {
                break positions;
            }
        };

        // The instruction each label stands for, to copy a `ret` instead of jumping to it.
        let mut at_label: Vec<Option<SockFilter>> = vec![None; self.labels];
        let mut pending: Vec<Label> = Vec::new();
        for item in &self.items {
            match item {
                Item::Mark(label) => pending.push(*label),
                Item::Plain(insn) => {
                    for label in pending.drain(..) {
                        at_label[label.0] = Some(*insn);
                    }
                }
                _ => pending.clear(),
            }
        }
        let trampoline = |pc: usize, target: Label| match at_label[target.0] {
            Some(insn) if insn.code == RET_K => insn,
            _ => SockFilter {
                code: JMP_JA,
                jt: 0,
                jf: 0,
                k: offset32(distance(&positions, pc, target)),
            },
        };

        let mut out: Vec<SockFilter> = Vec::with_capacity(self.items.len());
        for item in &self.items {
            let pc = out.len();
            match *item {
                Item::Mark(_) => {}
                Item::Plain(insn) => out.push(insn),
                Item::Ja(target) => out.push(SockFilter {
                    code: JMP_JA,
                    jt: 0,
                    jf: 0,
                    k: offset32(distance(&positions, pc, target)),
                }),
                Item::Cond {
                    code,
                    k,
                    jt,
                    jf,
                    far_t,
                    far_f,
                } => {
                    let short = |target| offset8(distance(&positions, pc, target));
                    out.push(SockFilter {
                        code,
                        jt: if far_t { 0 } else { short(jt) },
                        jf: if far_f { u8::from(far_t) } else { short(jf) },
                        k,
                    });
                    if far_t {
                        out.push(trampoline(pc + 1, jt));
                    }
                    if far_f {
                        out.push(trampoline(out.len(), jf));
                    }
                }
            }
        }
        out
    }

    fn positions(&self) -> Vec<Option<usize>> {
        let mut positions = vec![None; self.labels];
        let mut pc = 0;
        for item in &self.items {
            if let Item::Mark(label) = item {
                positions[label.0] = Some(pc);
            }
            pc += item.size();
        }
        positions
    }
}

/// How many instructions a jump at `pc` skips to land on `target`.
fn distance(positions: &[Option<usize>], pc: usize, target: Label) -> usize {
    let to = positions[target.0].expect("jump to a label that was never placed");
    to.checked_sub(pc + 1).expect("BPF jumps only go forward")
}

fn offset8(d: usize) -> u8 {
    u8::try_from(d).expect("short jump out of range after layout")
}

fn offset32(d: usize) -> u32 {
    u32::try_from(d).expect("a program of at most 4096 instructions")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn far_targets_get_trampolines_and_rets_are_copied() {
        let mut asm = Asm::default();
        let (far, near, end) = (asm.label(), asm.label(), asm.label());
        asm.load(0);
        asm.jump(JMP_JEQ_K, 7, far, near);
        asm.mark(near);
        for _ in 0..3 {
            asm.load(4);
        }
        asm.ja(end);
        asm.mark(far);
        asm.ret(42);
        asm.mark(end);
        asm.ret(0);
        let p = asm.clone_assemble(2);
        // jeq becomes: jeq 7, jt 0, jf 1; ret 42 (copied); then the loads.
        assert_eq!(p[1].code, JMP_JEQ_K);
        assert_eq!((p[1].jt, p[1].jf), (0, 1));
        assert_eq!((p[2].code, p[2].k), (RET_K, 42));
        assert_eq!(p.len(), 9);
        // Without the limit no trampoline is needed.
        let p = asm.clone_assemble(255);
        assert_eq!((p[1].jt, p[1].jf), (4, 0));
        assert_eq!(p.len(), 8);
    }

    impl Asm {
        fn clone_assemble(&self, max_jump: u8) -> Vec<SockFilter> {
            Asm {
                items: self.items.clone(),
                labels: self.labels,
            }
            .assemble(max_jump)
        }
    }
}
