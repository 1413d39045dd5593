//! Compiled programs run in the BPF emulator: every architecture path, argument comparison
//! and action, checked against expectations and, for random profiles, against the
//! independent reference model in `common`.

mod common;

use common::*;
use seccomp::{
    compile, compile_with, Abi, Error, Options, Warning, AUDIT_ARCH_I386, AUDIT_ARCH_X86_64,
    RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRACE, RET_TRAP,
    RET_USER_NOTIF, X32_SYSCALL_BIT,
};
use serde_json::json;

const X64: u32 = AUDIT_ARCH_X86_64;
const I386: u32 = AUDIT_ARCH_I386;
const NONE: [u64; 6] = [0; 6];

fn eval(filter: &seccomp::Filter, arch: u32, nr: u32, args: [u64; 6]) -> u32 {
    filter
        .evaluate(&data(arch, nr, args))
        .expect("a runnable program")
}

#[test]
fn every_action_maps_to_its_return_value() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["getpid"], "action": "SCMP_ACT_KILL"},
            {"names": ["getppid"], "action": "SCMP_ACT_KILL_THREAD"},
            {"names": ["getuid"], "action": "SCMP_ACT_KILL_PROCESS"},
            {"names": ["getgid"], "action": "SCMP_ACT_TRAP"},
            {"names": ["geteuid"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getegid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["gettid"], "action": "SCMP_ACT_TRACE"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_TRACE", "errnoRet": 77},
            {"names": ["getsid"], "action": "SCMP_ACT_LOG"},
            {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
            {"names": ["read"], "action": "SCMP_ACT_ALLOW"}
        ]
    }));
    let f = compile(&spec).unwrap();
    let expect = [
        ("getpid", RET_KILL_THREAD),
        ("getppid", RET_KILL_THREAD),
        ("getuid", RET_KILL_PROCESS),
        ("getgid", RET_TRAP),
        ("geteuid", errno(1)),
        ("getegid", errno(38)),
        ("gettid", RET_TRACE | 1),
        ("getpgrp", RET_TRACE | 77),
        ("getsid", RET_LOG),
        ("mkdir", RET_USER_NOTIF),
        ("read", RET_ALLOW),
        ("write", RET_ALLOW),
    ];
    for (name, want) in expect {
        assert_eq!(eval(&f, X64, nr(Abi::X86_64, name), NONE), want, "{name}");
    }
    assert!(f.wants_listener());
    assert_ne!(f.flags() & sys::seccomp::FILTER_FLAG_NEW_LISTENER, 0);
    // No `flags`: runc asks for SPEC_ALLOW when the kernel has it.
    assert_ne!(f.flags() & sys::seccomp::FILTER_FLAG_SPEC_ALLOW, 0);
}

#[test]
fn default_errno_ret_and_flags() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 13,
        "flags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(eval(&f, X64, nr(Abi::X86_64, "mkdir"), NONE), errno(13));
    assert_eq!(
        f.flags(),
        sys::seccomp::FILTER_FLAG_LOG | sys::seccomp::FILTER_FLAG_TSYNC
    );
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_TSYNC"],
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(
        f.flags(),
        sys::seccomp::FILTER_FLAG_WAIT_KILLABLE_RECV
            | sys::seccomp::FILTER_FLAG_TSYNC
            | sys::seccomp::FILTER_FLAG_TSYNC_ESRCH
            | sys::seccomp::FILTER_FLAG_NEW_LISTENER
    );
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
        "syscalls": []
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(f.flags(), 0);
    assert_eq!(f.warnings(), [Warning::WaitKillableWithoutListener]);
}

#[test]
fn architectures_dispatch_and_bad_arch_kills() {
    // Only the native ABI: i386 and unknown architectures get libseccomp's bad-arch action.
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(eval(&f, X64, nr(Abi::X86_64, "mkdir"), NONE), errno(1));
    assert_eq!(eval(&f, X64, nr(Abi::X86_64, "rmdir"), NONE), RET_ALLOW);
    assert_eq!(eval(&f, I386, nr(Abi::X86, "mkdir"), NONE), RET_KILL_THREAD);
    assert_eq!(eval(&f, AUDIT_ARCH_AARCH64, 34, NONE), RET_KILL_THREAD);
    // x32 calls on an x86_64-only filter: bad arch, but the tracer's -1 is let through.
    let x32_mkdir = nr(Abi::X32, "mkdir");
    assert_eq!(eval(&f, X64, x32_mkdir, NONE), RET_KILL_THREAD);
    assert_eq!(eval(&f, X64, u32::MAX, NONE), RET_ALLOW);

    // All three listed: each ABI resolves names with its own numbers.
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "chown32"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(
        f.warnings(),
        [Warning::IgnoredArch {
            arch: "SCMP_ARCH_AARCH64".into()
        }]
    );
    assert_eq!(eval(&f, X64, 83, NONE), errno(1)); // x86_64 mkdir
    assert_eq!(eval(&f, I386, 39, NONE), errno(1)); // i386 mkdir
    assert_eq!(eval(&f, I386, 83, NONE), RET_ALLOW); // i386 83 is symlink
    assert_eq!(eval(&f, X64, X32_SYSCALL_BIT | 83, NONE), errno(1)); // x32 mkdir
    assert_eq!(eval(&f, X64, X32_SYSCALL_BIT | 84, NONE), RET_ALLOW);
    assert_eq!(eval(&f, I386, nr(Abi::X86, "chown32"), NONE), errno(1));
    assert_eq!(eval(&f, AUDIT_ARCH_AARCH64, 34, NONE), RET_KILL_THREAD);
}

#[test]
fn enosys_stub_above_the_largest_named_call() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["read", "write", "openat", "futex_waitv"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    }));
    let f = compile(&spec).unwrap();
    let max64 = nr(Abi::X86_64, "futex_waitv");
    assert_eq!(eval(&f, X64, max64, NONE), RET_ALLOW);
    assert_eq!(eval(&f, X64, max64 - 1, NONE), errno(1));
    assert_eq!(eval(&f, X64, max64 + 1, NONE), errno(38));
    assert_eq!(eval(&f, X64, 0x3fff_ffff, NONE), errno(38));
    assert_eq!(eval(&f, X64, 0x8000_0000, NONE), errno(38));
    let max32 = nr(Abi::X32, "futex_waitv");
    assert_eq!(eval(&f, X64, max32, NONE), RET_ALLOW);
    assert_eq!(eval(&f, X64, max32 + 1, NONE), errno(38));
    assert_eq!(eval(&f, X64, u32::MAX, NONE), errno(38));
    assert_eq!(
        eval(&f, I386, nr(Abi::X86, "futex_waitv") + 1, NONE),
        errno(38)
    );
    assert_eq!(eval(&f, I386, nr(Abi::X86, "mkdir"), NONE), errno(1));

    // A permissive default action has no stub.
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_LOG",
        "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO"}, {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(eval(&f, X64, 500, NONE), RET_LOG);
}

/// Interesting 64-bit argument values around `v`.
fn around(v: u64) -> Vec<u64> {
    let mut out = vec![v, v.wrapping_add(1), v.wrapping_sub(1)];
    out.extend([
        v ^ 0xffff_ffff_0000_0000,
        v ^ 0xffff_ffff,
        v & 0xffff_ffff,
        v | 1 << 32,
    ]);
    out.extend([v.wrapping_add(1 << 32), v.wrapping_sub(1 << 32)]);
    out
}

#[test]
fn every_operator_on_64_and_32_bit_abis() {
    let ops = [
        "SCMP_CMP_NE",
        "SCMP_CMP_LT",
        "SCMP_CMP_LE",
        "SCMP_CMP_EQ",
        "SCMP_CMP_GE",
        "SCMP_CMP_GT",
        "SCMP_CMP_MASKED_EQ",
    ];
    let values: [u64; 8] = [
        0,
        1,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_0000_0001,
        0x8000_0000_0000_0000,
        u64::MAX,
        0x0000_0005_8000_0003,
    ];
    for op in ops {
        for &value in &values {
            for &value_two in &[0u64, 0x1_0000_0001, 0x3] {
                let spec = profile(json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                    "syscalls": [{
                        "names": ["lseek"], "action": "SCMP_ACT_ERRNO", "errnoRet": 5,
                        "args": [{"index": 1, "value": value, "valueTwo": value_two, "op": op}]
                    }]
                }));
                let f = compile(&spec).unwrap();
                let mut probes: Vec<u64> = values.iter().flat_map(|&v| around(v)).collect();
                probes.extend(around(value_two));
                for &arg in &probes {
                    for (arch, abi) in [(X64, Abi::X86_64), (I386, Abi::X86), (X64, Abi::X32)] {
                        let d = data(arch, nr(abi, "lseek"), [3, arg, 0, 0, 0, 0]);
                        assert_eq!(
                            f.evaluate(&d).unwrap(),
                            reference(&spec, &d),
                            "{op} {value:#x}/{value_two:#x} on {abi:?} with {arg:#x}"
                        );
                    }
                }
            }
        }
    }
    // Spot checks of the model itself: 64-bit GT needs the high word.
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [{"names": ["lseek"], "action": "SCMP_ACT_ERRNO",
                      "args": [{"index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GT"}]}]
    }));
    let f = compile(&spec).unwrap();
    let lseek = |abi| nr(abi, "lseek");
    assert_eq!(
        eval(&f, X64, lseek(Abi::X86_64), [0, 2, 0, 0, 0, 0]),
        RET_ALLOW
    );
    assert_eq!(
        eval(&f, X64, lseek(Abi::X86_64), [0, 0x1_0000_0001, 0, 0, 0, 0]),
        errno(1)
    );
    assert_eq!(
        eval(&f, X64, lseek(Abi::X86_64), [0, 0x2_0000_0000, 0, 0, 0, 0]),
        errno(1)
    );
    // On i386 only the low words count: the value is 0, so any nonzero low word is greater.
    assert_eq!(
        eval(&f, I386, lseek(Abi::X86), [0, 2, 0, 0, 0, 0]),
        errno(1)
    );
    assert_eq!(
        eval(&f, I386, lseek(Abi::X86), [0, 0x2_0000_0000, 0, 0, 0, 0]),
        RET_ALLOW
    );
}

#[test]
fn args_in_one_rule_are_anded_and_repeated_indexes_split_into_ors() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97, "args": [
                {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
                {"index": 1, "value": 0x80000, "valueTwo": 0x80000, "op": "SCMP_CMP_MASKED_EQ"}
            ]},
            {"names": ["socketpair"], "action": "SCMP_ACT_ERRNO", "errnoRet": 22, "args": [
                {"index": 0, "value": 10, "op": "SCMP_CMP_EQ"},
                {"index": 0, "value": 16, "op": "SCMP_CMP_EQ"}
            ]},
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 93, "args": [
                {"index": 0, "value": 17, "op": "SCMP_CMP_EQ"}
            ]}
        ]
    }));
    let f = compile(&spec).unwrap();
    let socket = nr(Abi::X86_64, "socket");
    let pair = nr(Abi::X86_64, "socketpair");
    assert_eq!(eval(&f, X64, socket, [2, 0x80001, 0, 0, 0, 0]), errno(97));
    assert_eq!(eval(&f, X64, socket, [2, 1, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(eval(&f, X64, socket, [1, 0x80001, 0, 0, 0, 0]), RET_ALLOW);
    assert_eq!(eval(&f, X64, socket, [17, 1, 0, 0, 0, 0]), errno(93));
    assert_eq!(eval(&f, X64, pair, [10, 1, 0, 0, 0, 0]), errno(22));
    assert_eq!(eval(&f, X64, pair, [16, 1, 0, 0, 0, 0]), errno(22));
    assert_eq!(eval(&f, X64, pair, [1, 1, 0, 0, 0, 0]), RET_ALLOW);
}

#[test]
fn unconditional_rules_win_and_default_action_rules_are_dropped() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["personality"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
            {"names": ["personality"], "action": "SCMP_ACT_LOG"},
            {"names": ["personality"], "action": "SCMP_ACT_TRAP",
             "args": [{"index": 0, "value": 9, "op": "SCMP_CMP_EQ"}]},
            {"names": ["read"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["read", "no_such_call"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
            {"names": ["another_unknown"], "action": "SCMP_ACT_ERRNO"}
        ]
    }));
    let f = compile(&spec).unwrap();
    let personality = nr(Abi::X86_64, "personality");
    for arg in [0, 8, 9] {
        assert_eq!(eval(&f, X64, personality, [arg, 0, 0, 0, 0, 0]), RET_LOG);
    }
    assert_eq!(eval(&f, X64, 0, NONE), RET_ALLOW);
    assert_eq!(
        f.warnings(),
        [Warning::UnknownSyscall {
            rule: 4,
            name: "no_such_call".into()
        }],
        "rules with the default action are skipped before names are looked up, as runc does"
    );
}

#[test]
fn i386_socket_calls_are_also_filtered_through_socketcall() {
    let spec = profile(json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86"],
        "syscalls": [
            {"names": ["socket", "send", "shmget"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97}
        ]
    }));
    let f = compile(&spec).unwrap();
    assert_eq!(eval(&f, I386, 359, NONE), errno(97)); // socket
    assert_eq!(eval(&f, I386, 102, [1, 0xffd0_0000, 0, 0, 0, 0]), errno(97)); // SYS_SOCKET
    assert_eq!(eval(&f, I386, 102, [9, 0, 0, 0, 0, 0]), errno(97)); // SYS_SEND
    assert_eq!(eval(&f, I386, 102, [3, 0, 0, 0, 0, 0]), RET_ALLOW); // SYS_CONNECT
    assert_eq!(eval(&f, I386, 117, [23, 0, 0, 0, 0, 0]), errno(97)); // SHMGET
    assert_eq!(eval(&f, I386, nr(Abi::X86, "shmget"), NONE), errno(97));
    assert_eq!(eval(&f, X64, nr(Abi::X86_64, "socket"), NONE), errno(97));
}

#[test]
fn profile_errors_name_the_field() {
    let err = |v| compile(&profile(v)).unwrap_err();
    let e = err(json!({"defaultAction": "SCMP_ACT_NOTIFY"}));
    assert!(matches!(e, Error::NotifyDefault), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_LOG"},
        {"names": ["mkdir", "write"], "action": "SCMP_ACT_NOTIFY"}]}));
    assert!(matches!(e, Error::NotifyWrite { rule: 1 }), "{e}");
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}, {"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]}]}));
    assert_eq!(
        e.to_string(),
        "linux.seccomp.syscalls[0].args[1].index: 6 is not an argument of read (0 to 5)"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read", "readv"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}]}));
    assert_eq!(
        e.to_string(),
        "linux.seccomp.syscalls[0].errnoRet: 70000 (for read,readv) does not fit in 16 bits"
    );
    let e = err(json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["read", ""], "action": "SCMP_ACT_ERRNO"}]}));
    assert!(matches!(e, Error::EmptyName { rule: 0, name: 1 }), "{e}");
}

fn docker_profile() -> oci_spec::runtime::LinuxSeccomp {
    let text = include_str!("fixtures/docker-default.json");
    serde_json::from_str(text).unwrap()
}

#[test]
fn docker_default_profile_compiles_small_and_behaves() {
    let spec = docker_profile();
    let names: usize = spec
        .syscalls()
        .iter()
        .flatten()
        .map(|r| r.names().len())
        .sum();
    let f = compile(&spec).unwrap();
    let len = f.program().len();
    println!(
        "docker-like profile: {names} names, {len} instructions (limit {})",
        seccomp::BPF_MAXINSNS
    );
    for w in f.warnings() {
        println!("  {w}");
    }
    assert!(len < 1500, "{len} instructions");
    let tight = compile_with(&spec, &Options { max_jump: 8 }).unwrap();
    println!("  with 8-instruction jumps: {}", tight.program().len());
    assert!(tight.program().len() < seccomp::BPF_MAXINSNS);

    for f in [&f, &tight] {
        let call = |abi: Abi, name: &str, args: [u64; 6]| {
            let arch = abi.audit_arch();
            eval(f, arch, nr(abi, name), args)
        };
        for abi in Abi::ALL {
            assert_eq!(call(abi, "read", NONE), RET_ALLOW, "{abi:?}");
            assert_eq!(call(abi, "execve", NONE), RET_ALLOW, "{abi:?}");
            assert_eq!(call(abi, "mkdir", NONE), RET_ALLOW, "{abi:?}");
            assert_eq!(call(abi, "unshare", NONE), errno(1), "{abi:?}");
            assert_eq!(call(abi, "mount", NONE), errno(1), "{abi:?}");
            assert_eq!(call(abi, "clone3", NONE), errno(38), "{abi:?}");
            assert_eq!(
                call(abi, "personality", [0xffff_ffff, 0, 0, 0, 0, 0]),
                RET_ALLOW
            );
            assert_eq!(call(abi, "personality", [1, 0, 0, 0, 0, 0]), errno(1));
            // clone without namespace flags only (SIGCHLD | CLONE_VM...).
            assert_eq!(call(abi, "clone", [0x0100_0011, 0, 0, 0, 0, 0]), RET_ALLOW);
            assert_eq!(call(abi, "clone", [0x1000_0011, 0, 0, 0, 0, 0]), errno(1));
        }
        assert_eq!(call(Abi::X86, "chown32", NONE), RET_ALLOW);
        assert_eq!(call(Abi::X86_64, "arch_prctl", NONE), RET_ALLOW);
        assert_eq!(eval(f, X64, 1000, NONE), errno(38));
        assert_eq!(eval(f, AUDIT_ARCH_AARCH64, 0, NONE), RET_KILL_THREAD);
    }
    assert_eq!(f.flags(), sys::seccomp::FILTER_FLAG_SPEC_ALLOW);
}

#[test]
fn docker_profile_matches_the_reference_everywhere() {
    let spec = docker_profile();
    for options in [Options::default(), Options { max_jump: 3 }] {
        let f = compile_with(&spec, &options).unwrap();
        for arch in [X64, I386, AUDIT_ARCH_AARCH64] {
            let mut nrs: Vec<u32> = (0..600).collect();
            nrs.extend((0..600).map(|n| n | X32_SYSCALL_BIT));
            nrs.extend([
                0x3fff_ffff,
                0x7fff_ffff,
                0x8000_0000,
                0xc000_0000,
                u32::MAX - 1,
                u32::MAX,
            ]);
            for nr in nrs {
                for args in [
                    NONE,
                    [0x7e02_0000, 1, 2, 3, 4, 5],
                    [0xffff_ffff; 6],
                    [8, 0, 0, 0, 0, 0],
                ] {
                    let d = data(arch, nr, args);
                    assert_eq!(
                        f.evaluate(&d).unwrap(),
                        reference(&spec, &d),
                        "{arch:#x} {nr:#x} {args:?}"
                    );
                }
            }
        }
    }
}

const POOL: [&str; 18] = [
    "read",
    "write",
    "mkdir",
    "mkdirat",
    "socket",
    "personality",
    "lseek",
    "chown32",
    "clone",
    "futex",
    "send",
    "socketcall",
    "openat",
    "close",
    "rt_sigaction",
    "shmget",
    "_llseek",
    "no_such_call",
];
const ACTIONS: [&str; 8] = [
    "SCMP_ACT_KILL_PROCESS",
    "SCMP_ACT_KILL",
    "SCMP_ACT_TRAP",
    "SCMP_ACT_ERRNO",
    "SCMP_ACT_TRACE",
    "SCMP_ACT_ALLOW",
    "SCMP_ACT_LOG",
    "SCMP_ACT_NOTIFY",
];
const OPS: [&str; 7] = [
    "SCMP_CMP_NE",
    "SCMP_CMP_LT",
    "SCMP_CMP_LE",
    "SCMP_CMP_EQ",
    "SCMP_CMP_GE",
    "SCMP_CMP_GT",
    "SCMP_CMP_MASKED_EQ",
];
const VALUES: [u64; 10] = [
    0,
    1,
    2,
    42,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    0x1_0000_0001,
    0xffff_ffff_0000_0000,
    u64::MAX,
];

fn random_profile(rng: &mut Rng) -> serde_json::Value {
    let archs: Vec<&str> = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        .into_iter()
        .filter(|_| rng.chance(50))
        .collect();
    let default = *rng.pick(&ACTIONS[..7]);
    let mut rules = Vec::new();
    for _ in 0..rng.below(12) {
        let names: Vec<&str> = (0..1 + rng.below(3)).map(|_| *rng.pick(&POOL)).collect();
        let mut action = *rng.pick(&ACTIONS);
        if action == "SCMP_ACT_NOTIFY" && names.contains(&"write") {
            action = "SCMP_ACT_LOG";
        }
        let args: Vec<serde_json::Value> = (0..rng.below(4))
            .map(|_| {
                json!({
                    "index": rng.below(3),
                    "op": *rng.pick(&OPS),
                    "value": *rng.pick(&VALUES),
                    "valueTwo": *rng.pick(&VALUES),
                })
            })
            .collect();
        let mut rule = json!({"names": names, "action": action, "args": args});
        if rng.chance(30) {
            rule["errnoRet"] = json!(rng.below(200));
        }
        rules.push(rule);
    }
    json!({"defaultAction": default, "architectures": archs, "syscalls": rules})
}

#[test]
fn random_profiles_match_the_reference() {
    let mut rng = Rng(0x5eed_cafe_f00d_1234);
    let mut checked = 0usize;
    for round in 0..400 {
        let json = random_profile(&mut rng);
        let spec = profile(json.clone());
        let max_jump = if round % 2 == 0 {
            255
        } else {
            1 + rng.below(6) as u8
        };
        let f = compile_with(&spec, &Options { max_jump }).unwrap();
        let mut nrs: Vec<u32> = vec![0, 1, 0x3fff_ffff, 0x4000_0000, 0x8000_0000, u32::MAX];
        for abi in Abi::ALL {
            for name in POOL {
                if let Some(n) = abi.syscall(name) {
                    nrs.extend([n.saturating_sub(1), n, n + 1]);
                }
            }
        }
        nrs.extend([102, 117, 451, 0x4000_0000 | 548]);
        for &nr in &nrs {
            for arch in [X64, I386, AUDIT_ARCH_AARCH64] {
                for _ in 0..12 {
                    let mut args = [0u64; 6];
                    for a in args.iter_mut().take(3) {
                        let v = *rng.pick(&VALUES);
                        *a = match rng.below(4) {
                            0 => v.wrapping_add(1),
                            1 => v.wrapping_sub(1),
                            _ => v,
                        };
                    }
                    if nr == 102 || nr == 117 {
                        args[0] = rng.below(25) as u64;
                    }
                    let d = data(arch, nr, args);
                    let got = f.evaluate(&d).unwrap();
                    let want = reference(&spec, &d);
                    assert_eq!(
                        got, want,
                        "round {round}, {arch:#x} nr {nr:#x} args {args:x?}, max_jump {max_jump}\n{json:#}"
                    );
                    checked += 1;
                }
            }
        }
    }
    println!("{checked} evaluations agree");
    let _ = (RET_ERRNO, USED);
}
