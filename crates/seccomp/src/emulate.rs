//! A classic-BPF interpreter over `struct seccomp_data`: runs a filter the way the kernel
//! would, to see what it returns for any architecture, system call and arguments without
//! loading it. It accepts the instructions the kernel's seccomp checker accepts.

use sys::seccomp::{SeccompData, SockFilter};

use crate::error::Error;

/// `BPF_MEMWORDS`: the scratch memory of a classic BPF program.
const MEMWORDS: usize = 16;

/// Runs `program` on `data` and returns the seccomp return value.
///
/// Fails on what the kernel would refuse to load or what cannot happen in a valid program:
/// an unknown opcode, a load outside `seccomp_data` or not 32-bit aligned, a jump past the
/// end, running off the end without returning.
pub fn run(program: &[SockFilter], data: &SeccompData) -> Result<u32, Error> {
    let word = |pc: usize, offset: u32| -> Result<u32, Error> {
        let bad = || Error::Emulate {
            pc,
            reason: "load outside seccomp_data or not aligned",
        };
        if offset & 3 != 0 {
            return Err(bad());
        }
        Ok(match offset {
            0 => data.nr as u32,
            4 => data.arch,
            8 => data.instruction_pointer as u32,
            12 => (data.instruction_pointer >> 32) as u32,
            16..=63 => {
                let arg = data.args[(offset as usize - 16) / 8];
                if offset & 4 == 0 {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => return Err(bad()),
        })
    };
    let (mut a, mut x) = (0u32, 0u32);
    let mut mem = [0u32; MEMWORDS];
    let mut pc = 0usize;
    loop {
        let insn = *program.get(pc).ok_or(Error::Emulate {
            pc,
            reason: "ran off the end of the program",
        })?;
        let at = pc;
        let fail = move |reason| Error::Emulate { pc: at, reason };
        let k = insn.k;
        let scratch = |k: u32| {
            usize::try_from(k)
                .ok()
                .filter(|&i| i < MEMWORDS)
                .ok_or(fail("scratch memory index out of range"))
        };
        pc += 1;
        match insn.code {
            // BPF_LD: W|ABS, W|LEN, IMM, MEM
            0x20 => a = word(at, k)?,
            0x80 => a = std::mem::size_of::<SeccompData>() as u32,
            0x00 => a = k,
            0x60 => a = mem[scratch(k)?],
            // BPF_LDX: W|LEN, IMM, MEM
            0x81 => x = std::mem::size_of::<SeccompData>() as u32,
            0x01 => x = k,
            0x61 => x = mem[scratch(k)?],
            // BPF_ST, BPF_STX
            0x02 => mem[scratch(k)?] = a,
            0x03 => mem[scratch(k)?] = x,
            // BPF_ALU
            code if code & 0x07 == 0x04 => {
                let src = if code & 0x08 != 0 { x } else { k };
                a = match code & 0xf0 {
                    0x00 => a.wrapping_add(src),
                    0x10 => a.wrapping_sub(src),
                    0x20 => a.wrapping_mul(src),
                    // The kernel refuses a constant 0 divisor and returns 0 for X == 0.
                    0x30 | 0x90 if src == 0 => {
                        if code & 0x08 == 0 {
                            return Err(fail("division by the constant 0"));
                        }
                        return Ok(0);
                    }
                    0x30 => a / src,
                    0x90 => a % src,
                    0x40 => a | src,
                    0x50 => a & src,
                    0x60 => a.checked_shl(src).unwrap_or(0),
                    0x70 => a.checked_shr(src).unwrap_or(0),
                    0x80 => a.wrapping_neg(),
                    0xa0 => a ^ src,
                    _ => return Err(fail("unknown ALU operation")),
                };
            }
            // BPF_JMP
            0x05 => pc = pc.saturating_add(k as usize),
            code if code & 0x07 == 0x05 => {
                let src = if code & 0x08 != 0 { x } else { k };
                let taken = match code & 0xf0 {
                    0x10 => a == src,
                    0x20 => a > src,
                    0x30 => a >= src,
                    0x40 => a & src != 0,
                    _ => return Err(fail("unknown jump")),
                };
                pc += usize::from(if taken { insn.jt } else { insn.jf });
            }
            // BPF_RET: K, A
            0x06 => return Ok(k),
            0x16 => return Ok(a),
            // BPF_MISC: TAX, TXA
            0x07 => x = a,
            0x87 => a = x,
            _ => return Err(fail("unknown opcode")),
        }
        if pc > program.len() {
            return Err(Error::Emulate {
                pc: pc - 1,
                reason: "jump past the end of the program",
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u16, jt: u8, jf: u8, k: u32) -> SockFilter {
        SockFilter { code, jt, jf, k }
    }

    #[test]
    fn loads_words_of_seccomp_data() {
        let data = SeccompData {
            nr: -1,
            arch: 7,
            instruction_pointer: 0x1111_2222_3333_4444,
            args: [0xaaaa_bbbb_cccc_dddd, 0, 0, 0, 0, 0x5555_6666_7777_8888],
        };
        for (offset, want) in [
            (0, u32::MAX),
            (4, 7),
            (8, 0x3333_4444),
            (12, 0x1111_2222),
            (16, 0xcccc_dddd),
            (20, 0xaaaa_bbbb),
            (56, 0x7777_8888),
            (60, 0x5555_6666),
        ] {
            let p = [insn(0x20, 0, 0, offset), insn(0x16, 0, 0, 0)];
            assert_eq!(run(&p, &data).unwrap(), want, "offset {offset}");
        }
        for bad in [2, 64] {
            let p = [insn(0x20, 0, 0, bad), insn(0x16, 0, 0, 0)];
            assert!(run(&p, &data).is_err());
        }
    }

    #[test]
    fn jumps_and_alu() {
        let data = SeccompData::default();
        // A = 5; A &= 4; if A == 4 ret 1 else ret 2
        let p = [
            insn(0x00, 0, 0, 5),
            insn(0x54, 0, 0, 4),
            insn(0x15, 0, 1, 4),
            insn(0x06, 0, 0, 1),
            insn(0x06, 0, 0, 2),
        ];
        assert_eq!(run(&p, &data).unwrap(), 1);
        let p = [insn(0x15, 5, 5, 0), insn(0x06, 0, 0, 1)];
        assert!(run(&p, &data).is_err());
        let p = [insn(0x00, 0, 0, 5)];
        assert!(run(&p, &data).is_err());
    }
}
