//! Pure cgroup v2 behaviour, on this machine's real cgroup2 mount (on the hybrid host that is
//! /sys/fs/cgroup/unified, which holds few controllers: what it lacks is skipped with the
//! reason printed, and checked to fail cleanly). Tests here run one at a time: creating a
//! v2 cgroup enables controllers in the root's `cgroup.subtree_control`, which each test
//! restores afterwards.

mod common;

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use cgroups::{Controller, Error, FreezerState, Hierarchies, Manager, Mode, Signal};
use common::{probe_dev_null, proc_state, read, unique, wait_for, Gated, Guard};
use oci_spec::runtime::*;

static LOCK: Mutex<()> = Mutex::new(());

/// Holds the lock and puts the cgroup2 root's `cgroup.subtree_control` back as it was.
struct Root {
    mnt: PathBuf,
    before: String,
    _lock: MutexGuard<'static, ()>,
}

impl Root {
    fn take(mnt: &Path) -> Root {
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        Root {
            mnt: mnt.to_path_buf(),
            before: read(mnt, "cgroup.subtree_control"),
            _lock: lock,
        }
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let now =
            std::fs::read_to_string(self.mnt.join("cgroup.subtree_control")).unwrap_or_default();
        for c in now.split_whitespace() {
            if !self.before.split_whitespace().any(|b| b == c) {
                let _ = std::fs::write(self.mnt.join("cgroup.subtree_control"), format!("-{c}"));
            }
        }
    }
}

/// A v2-only manager rooted at the cgroup2 mount, created; `None` (skipped) without one.
fn v2(path: &Path) -> Option<(Root, Guard)> {
    if !common::can_run() {
        return None;
    }
    let Some(mnt) = common::unified_mount() else {
        eprintln!("skipped: no cgroup2 mount");
        return None;
    };
    let root = Root::take(&mnt);
    let h = Hierarchies::unified_at(&mnt).expect("unified_at");
    let mut m = Manager::new(h, path).expect("manager");
    assert_eq!(m.mode(), Mode::Unified);
    m.create().expect("create");
    Some((root, Guard::new(m)))
}

fn available(m: &Manager, c: &str) -> bool {
    m.hierarchies()
        .unified
        .as_ref()
        .unwrap()
        .controllers
        .iter()
        .any(|x| x == c)
}

fn res() -> LinuxResourcesBuilder {
    LinuxResourcesBuilder::default()
}

#[test]
fn v2_limits_where_available_clean_errors_elsewhere() {
    let Some((root, m)) = v2(&unique(None)) else {
        return;
    };
    let dir = m.unified_path().unwrap().to_path_buf();
    assert!(dir.join("cgroup.procs").exists());
    eprintln!(
        "cgroup2 controllers here: {:?}",
        m.hierarchies().unified.as_ref().unwrap().controllers
    );

    let memory = res()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64i64 << 20)
                .swap(96i64 << 20)
                .reservation(1i64 << 20)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    if available(&m, "memory") {
        m.apply(&memory).unwrap();
        assert_eq!(read(&dir, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(read(&dir, "memory.low"), (1u64 << 20).to_string());
        if dir.join("memory.swap.max").exists() {
            assert_eq!(
                read(&dir, "memory.swap.max"),
                (32u64 << 20).to_string(),
                "swap - limit"
            );
        }
    } else {
        let e = m.apply(&memory).unwrap_err();
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
        eprintln!("skipped memory limits (not on cgroup2 here): {e}");
    }

    let cpu = res()
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(20_000)
                .period(100_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    if available(&m, "cpu") {
        m.apply(&cpu).unwrap();
        assert_eq!(read(&dir, "cpu.weight"), "39");
        assert_eq!(read(&dir, "cpu.max"), "20000 100000");
        // Only the period: the quota stays.
        m.apply(
            &res()
                .cpu(
                    LinuxCpuBuilder::default()
                        .period(50_000u64)
                        .build()
                        .unwrap(),
                )
                .build()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(read(&dir, "cpu.max"), "20000 50000");
    } else {
        let e = m.apply(&cpu).unwrap_err();
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
        eprintln!("skipped cpu limits (not on cgroup2 here): {e}");
    }

    let pids = res()
        .pids(LinuxPidsBuilder::default().limit(7).build().unwrap())
        .build()
        .unwrap();
    if available(&m, "pids") {
        m.apply(&pids).unwrap();
        assert_eq!(read(&dir, "pids.max"), "7");
    } else {
        let e = m.apply(&pids).unwrap_err();
        eprintln!("skipped pids limit (not on cgroup2 here): {e}");
    }

    if available(&m, "hugetlb") {
        // create() enabled every available controller on the way down (pure v2 behaviour).
        assert!(read(&root.mnt, "cgroup.subtree_control").contains("hugetlb"));
        let limits = vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4i64 << 20)
            .build()
            .unwrap()];
        m.apply(&res().hugepage_limits(limits).build().unwrap())
            .unwrap();
        assert_eq!(read(&dir, "hugetlb.2MB.max"), (4u64 << 20).to_string());
        if dir.join("hugetlb.2MB.rsvd.max").exists() {
            assert_eq!(read(&dir, "hugetlb.2MB.rsvd.max"), (4u64 << 20).to_string());
        }
        let s = m.stats().unwrap();
        assert!(s.hugetlb.contains_key("2MB"), "{:?}", s.hugetlb);
    } else {
        eprintln!("skipped hugetlb: not on cgroup2 here (moved to v1 by someone's hybrid fix?)");
    }

    // Core v2 files work everywhere through the unified map.
    let map: HashMap<String, String> =
        [("cgroup.max.descendants".to_string(), "4".to_string())].into();
    m.apply(&res().unified(map).build().unwrap()).unwrap();
    assert_eq!(read(&dir, "cgroup.max.descendants"), "4");
    // Real-time CPU has no v2 form.
    let rt = res()
        .cpu(
            LinuxCpuBuilder::default()
                .realtime_runtime(1000)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(matches!(m.apply(&rt), Err(Error::NotSupported { .. })));
}

#[test]
fn v2_processes_freeze_stats_kill() {
    let Some((_root, mut m)) = v2(&unique(None)) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("count");
    let mut g = Gated::spawn(&format!(
        "i=0; while :; do i=$((i+1)); echo $i >> {}; done",
        f.display()
    ));
    let pid = g.pid();
    m.add_process(pid).unwrap();
    g.go();
    assert_eq!(m.pids().unwrap(), [pid]);
    let count = || std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
    assert!(wait_for(Duration::from_secs(5), || count() > 100));

    m.freeze().unwrap();
    assert_eq!(m.state().unwrap(), FreezerState::Frozen);
    assert!(read(m.unified_path().unwrap(), "cgroup.events").contains("frozen 1"));
    let a = count();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a, count(), "no progress while frozen");
    eprintln!("v2 frozen busy loop: State {}", proc_state(pid));
    m.thaw().unwrap();
    assert_eq!(m.state().unwrap(), FreezerState::Thawed);
    assert!(wait_for(Duration::from_secs(5), || count() > a));

    // cpu.stat is there in every v2 cgroup, cpu controller or not.
    let s = m.stats().unwrap();
    assert!(
        s.cpu.usage.total > 0 && s.cpu.usage.user + s.cpu.usage.kernel > 0,
        "{:?}",
        s.cpu
    );

    // A child cgroup the container made is found and removed too.
    let sub = m.unified_path().unwrap().join("inner");
    std::fs::create_dir(&sub).unwrap();

    m.kill_all(Signal::KILL).unwrap();
    assert!(wait_for(Duration::from_secs(5), || m
        .pids()
        .unwrap()
        .is_empty()));
    g.child.wait().unwrap();
    let path = m.unified_path().unwrap().to_path_buf();
    m.m.delete().unwrap();
    assert!(!path.exists());
    m.m.create().unwrap();
}

fn attached(dir: &Path) -> Vec<u32> {
    let fd = std::fs::File::open(dir).unwrap();
    sys::bpf::query_cgroup_device(fd.as_fd()).unwrap().0
}

fn rule(
    allow: bool,
    typ: Option<LinuxDeviceType>,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .access(access);
    if let Some(t) = typ {
        b = b.typ(t);
    }
    if let Some(v) = major {
        b = b.major(v);
    }
    if let Some(v) = minor {
        b = b.minor(v);
    }
    b.build().unwrap()
}

#[test]
fn v2_device_filter_ebpf() {
    let Some((_root, m)) = v2(&unique(None)) else {
        return;
    };
    let dir = m.unified_path().unwrap().to_path_buf();
    let c = Some(LinuxDeviceType::C);
    let apply = |rules: Vec<LinuxDeviceCgroup>| {
        m.apply(&res().devices(rules).build().unwrap())
            .expect("device program")
    };

    // Deny everything but reading /dev/null (1:3).
    apply(vec![
        rule(false, None, None, None, "rwm"),
        rule(true, c, Some(1), Some(3), "r"),
    ]);
    let first = attached(&dir);
    assert_eq!(first.len(), 1);
    let (w, r, err) = probe_dev_null(&m);
    assert!(!w, "write to /dev/null must be denied");
    assert!(r, "read of /dev/null must be allowed (stderr {err:?})");
    assert!(
        err.contains("Operation not permitted"),
        "EPERM expected: {err}"
    );

    // Allow writing too: the new program replaces the old one.
    apply(vec![
        rule(false, None, None, None, "rwm"),
        rule(true, c, Some(1), Some(3), "rw"),
    ]);
    let second = attached(&dir);
    assert_eq!(second.len(), 1);
    assert_ne!(first, second);
    let (w, r, err) = probe_dev_null(&m);
    assert!(w && r, "both allowed now ({err})");

    // Allow-all with a hole: last match wins, per access bit.
    apply(vec![
        rule(true, None, None, None, "rwm"),
        rule(false, c, Some(1), None, "w"),
    ]);
    let (w, r, _) = probe_dev_null(&m);
    assert!(!w && r);
    assert_eq!(attached(&dir).len(), 1);
}

#[test]
fn v2_pids_limit_enforced() {
    let Some((_root, m)) = v2(&unique(None)) else {
        return;
    };
    if !available(&m, "pids") {
        eprintln!(
            "skipped: the pids controller is not on cgroup2 here (tests/host.rs covers it on v1)"
        );
        return;
    }
    m.apply(
        &res()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap(),
    )
    .unwrap();
    let g = Gated::spawn("for i in $(seq 20); do sleep 5 & done; wait");
    m.add_process(g.pid()).unwrap();
    let (_, _, err) = g.run();
    assert!(err.to_lowercase().contains("fork"), "{err}");
}

#[test]
fn hybrid_puts_v2_only_controllers_on_cgroup2() {
    if !common::can_run() {
        return;
    }
    let Some(mnt) = common::unified_mount() else {
        return;
    };
    let root = Root::take(&mnt);
    let mut m = Manager::detect(&unique(None)).unwrap();
    if m.mode() != Mode::Hybrid {
        eprintln!("skipped: not a hybrid host");
        return;
    }
    m.create().unwrap();
    let m = Guard::new(m);
    if m.hierarchies().location(Controller::Hugetlb) != Some(cgroups::hierarchy::Location::Unified)
    {
        eprintln!("skipped: hugetlb is not on cgroup2 here");
        return;
    }
    // Nothing enabled in the root just by creating (a hybrid host keeps cgroup2 untouched)…
    assert_eq!(read(&mnt, "cgroup.subtree_control"), root.before);
    let limits = vec![LinuxHugepageLimitBuilder::default()
        .page_size("2MB")
        .limit(2i64 << 20)
        .build()
        .unwrap()];
    m.apply(&res().hugepage_limits(limits).build().unwrap())
        .unwrap();
    // …until a limit needs it.
    assert!(read(&mnt, "cgroup.subtree_control").contains("hugetlb"));
    assert_eq!(
        read(m.unified_path().unwrap(), "hugetlb.2MB.max"),
        (2u64 << 20).to_string()
    );
    assert_eq!(m.path(Controller::Hugetlb), m.unified_path());
    drop(m);
    drop(root);
}
