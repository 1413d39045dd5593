//! The cgroups crate against this machine's hierarchies as detected (here: v1 controllers
//! plus cgroup2 at /sys/fs/cgroup/unified, the hybrid layout). Each test uses its own
//! `/fluke-test-<pid>-<n>` cgroup and removes it, even when it fails.

mod common;

use std::path::Path;
use std::time::Duration;

use cgroups::{Controller, Error, FreezerState, Manager, Mode, Signal};
use common::{probe_dev_null, proc_state, read, unique, wait_for, Gated, Guard};
use oci_spec::runtime::*;

fn host(path: &Path) -> Option<Guard> {
    if !common::can_run() {
        return None;
    }
    let mut m = Manager::detect(path).expect("detect");
    if m.mode() == Mode::Unified {
        eprintln!("skipped: this host is pure cgroup v2 (tests/unified.rs covers it)");
        return None;
    }
    m.create().expect("create");
    Some(Guard::new(m))
}

fn resources(memory: (i64, i64), pids: i64) -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(memory.0)
                .swap(memory.1)
                .reservation(memory.0 / 2)
                .swappiness(10u64)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000)
                .period(100_000u64)
                .cpus("0")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(pids).build().unwrap())
        .build()
        .unwrap()
}

#[test]
fn create_apply_and_read_back_v1() {
    let Some(m) = host(&unique(None)) else { return };
    for p in m.paths() {
        assert!(p.join("cgroup.procs").exists(), "{} created", p.display());
    }
    if m.mode() == Mode::Hybrid {
        let u = m.unified_path().unwrap();
        assert!(
            u.join("cgroup.procs").exists(),
            "hybrid: the cgroup2 side is created too"
        );
    }
    let ignored = m
        .apply(&resources((64 << 20, 128 << 20), 42))
        .expect("apply");
    assert!(ignored.is_empty(), "{ignored:?}");

    let mem = m.path(Controller::Memory).unwrap();
    assert_eq!(
        read(mem, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    let has_memsw = mem.join("memory.memsw.limit_in_bytes").exists();
    if has_memsw {
        assert_eq!(
            read(mem, "memory.memsw.limit_in_bytes"),
            (128u64 << 20).to_string()
        );
    }
    assert_eq!(
        read(mem, "memory.soft_limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(read(mem, "memory.swappiness"), "10");
    let cpu = m.path(Controller::Cpu).unwrap();
    assert_eq!(read(cpu, "cpu.shares"), "512");
    assert_eq!(read(cpu, "cpu.cfs_quota_us"), "20000");
    assert_eq!(read(cpu, "cpu.cfs_period_us"), "100000");
    let cpuset = m.path(Controller::Cpuset).unwrap();
    assert_eq!(read(cpuset, "cpuset.cpus"), "0");
    assert_eq!(read(cpuset, "cpuset.mems"), "0");
    assert_eq!(read(m.path(Controller::Pids).unwrap(), "pids.max"), "42");

    // An update that lowers both limits, then one that raises both: the memory/memsw order
    // has to flip for the kernel to take them.
    m.apply(&resources((32 << 20, 48 << 20), 0)).expect("lower");
    assert_eq!(
        read(mem, "memory.limit_in_bytes"),
        (32u64 << 20).to_string()
    );
    assert_eq!(read(m.path(Controller::Pids).unwrap(), "pids.max"), "max");
    m.apply(&resources((256 << 20, 512 << 20), -1))
        .expect("raise");
    assert_eq!(
        read(mem, "memory.limit_in_bytes"),
        (256u64 << 20).to_string()
    );
    if has_memsw {
        assert_eq!(
            read(mem, "memory.memsw.limit_in_bytes"),
            (512u64 << 20).to_string()
        );
    }

    // Block I/O throttling on the first disk, if there is one.
    let blkio = m.path(Controller::Blkio).unwrap();
    if let Some((major, minor)) = first_disk() {
        let b = LinuxBlockIoBuilder::default()
            .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .rate(1u64 << 20)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        m.apply(
            &LinuxResourcesBuilder::default()
                .block_io(b)
                .build()
                .unwrap(),
        )
        .expect("throttle");
        assert_eq!(
            read(blkio, "blkio.throttle.read_bps_device"),
            format!("{major}:{minor} 1048576")
        );
    }

    // A weight goes to blkio.weight, or blkio.bfq.weight on kernels without CFQ; with
    // neither it is a clear error naming the file (the specs above applied fine).
    let b = LinuxBlockIoBuilder::default()
        .weight(500u16)
        .build()
        .unwrap();
    let weight = LinuxResourcesBuilder::default()
        .block_io(b)
        .build()
        .unwrap();
    if blkio.join("blkio.weight").exists() {
        m.apply(&weight).unwrap();
        assert_eq!(read(blkio, "blkio.weight"), "500");
    } else if blkio.join("blkio.bfq.weight").exists() {
        m.apply(&weight).unwrap();
        assert!(
            read(blkio, "blkio.bfq.weight").contains("500"),
            "{}",
            read(blkio, "blkio.bfq.weight")
        );
    } else {
        let b = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .build()
            .unwrap();
        let e = m
            .apply(
                &LinuxResourcesBuilder::default()
                    .block_io(b)
                    .build()
                    .unwrap(),
            )
            .unwrap_err();
        assert!(matches!(e, Error::NotSupported { .. }), "{e}");
        assert!(e.to_string().contains("blkio.weight"), "{e}");
        eprintln!("as expected: {e}");
    }

    // Real-time CPU time, where the kernel has group RT scheduling.
    if cpu.join("cpu.rt_runtime_us").exists() {
        let c = LinuxCpuBuilder::default()
            .realtime_period(1_000_000u64)
            .realtime_runtime(1000)
            .build()
            .unwrap();
        match m.apply(&LinuxResourcesBuilder::default().cpu(c).build().unwrap()) {
            Ok(_) => assert_eq!(read(cpu, "cpu.rt_runtime_us"), "1000"),
            // The parent (root) may have no RT time left to hand out.
            Err(e) => eprintln!("rt runtime refused by the kernel: {e}"),
        }
    }

    // The raw cgroup2 map goes to the cgroup2 side of a hybrid host; a file it lacks there
    // (memory lives in v1 here) is an error naming it.
    if m.mode() == Mode::Hybrid {
        let unified = |k: &str, v: &str| {
            let map = [(k.to_string(), v.to_string())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>();
            m.apply(
                &LinuxResourcesBuilder::default()
                    .unified(map)
                    .build()
                    .unwrap(),
            )
        };
        unified("cgroup.max.descendants", "3").unwrap();
        assert_eq!(
            read(m.unified_path().unwrap(), "cgroup.max.descendants"),
            "3"
        );
        if !m.unified_path().unwrap().join("memory.high").exists() {
            let e = unified("memory.high", "1G").unwrap_err();
            assert!(
                matches!(e, Error::NotSupported { .. }) && e.to_string().contains("memory.high"),
                "{e}"
            );
            eprintln!("as expected: {e}");
        }
    }

    // memory.kernel is ignored with a note.
    let k = LinuxMemoryBuilder::default()
        .kernel(1 << 20)
        .build()
        .unwrap();
    let ignored = m
        .apply(&LinuxResourcesBuilder::default().memory(k).build().unwrap())
        .unwrap();
    assert_eq!(ignored.len(), 1);
    assert_eq!(ignored[0].setting, "memory.kernel");
}

fn first_disk() -> Option<(i64, i64)> {
    let text = std::fs::read_to_string("/proc/partitions").ok()?;
    text.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let name = *f.get(3)?;
        let disk = name.starts_with("vd") || name.starts_with("sd") || name.starts_with("nvme");
        if disk && Path::new("/sys/block").join(name).exists() {
            return Some((f[0].parse().ok()?, f[1].parse().ok()?));
        }
        None
    })
}

#[test]
fn processes_stats_freeze_kill_v1() {
    let Some(mut m) = host(&unique(None)) else {
        return;
    };
    // 2 MB in a shell variable, then a sleeping child: two processes, memory charged here.
    let mut g = Gated::spawn(
        "x=$(head -c 2000000 /dev/zero | tr '\\0' a); echo ready; sleep 30; echo ${#x}",
    );
    let sh = g.pid();
    m.add_process(sh).expect("add_process");
    g.go();
    assert_eq!(g.line(), "ready");
    assert!(
        wait_for(Duration::from_secs(10), || m.pids().unwrap().len() >= 2),
        "sh and sleep"
    );
    let pids = m.pids().unwrap();
    assert!(pids.contains(&sh), "{pids:?}");
    for d in m.paths() {
        let procs = read(d, "cgroup.procs");
        assert!(
            procs.lines().any(|l| l == sh.to_string()),
            "{}: {procs}",
            d.display()
        );
    }

    let s = m.stats().expect("stats");
    assert!(
        s.memory.usage.usage > 1_000_000,
        "memory usage {:?}",
        s.memory.usage
    );
    assert!(s.memory.raw.contains_key("rss") || s.memory.raw.contains_key("anon"));
    assert!(s.pids.current >= 2, "{:?}", s.pids);
    assert!(s.cpu.usage.total > 0, "{:?}", s.cpu.usage);
    assert_eq!(
        s.cpu.usage.percpu.len(),
        std::thread::available_parallelism().unwrap().get()
    );
    eprintln!(
        "stats: cpu {:?}, memory usage {:?}, pids {:?}",
        s.cpu.usage, s.memory.usage, s.pids
    );

    assert_eq!(m.state().unwrap(), FreezerState::Thawed);
    m.freeze().expect("freeze");
    assert_eq!(m.state().unwrap(), FreezerState::Frozen);
    assert_eq!(
        read(m.path(Controller::Freezer).unwrap(), "freezer.state"),
        "FROZEN"
    );
    eprintln!("frozen sh: State {}", proc_state(sh));
    m.thaw().expect("thaw");
    assert_eq!(m.state().unwrap(), FreezerState::Thawed);

    // kill_all on a frozen cgroup still gets everything out.
    m.freeze().unwrap();
    m.kill_all(Signal::KILL).expect("kill_all");
    assert!(
        wait_for(Duration::from_secs(5), || m.pids().unwrap().is_empty()),
        "{:?}",
        m.pids()
    );
    let status = g.child.wait().unwrap();
    assert!(!status.success());
    let paths: Vec<_> = m.paths().iter().map(|p| p.to_path_buf()).collect();
    m.m.delete().expect("delete");
    for p in &paths {
        assert!(!p.exists(), "{} left behind", p.display());
    }
    // Deleting twice is fine.
    m.m.delete().unwrap();
    m.m.create().unwrap(); // the guard deletes it again
}

#[test]
fn freeze_stops_progress_v1() {
    let Some(m) = host(&unique(None)) else { return };
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("count");
    let mut g = Gated::spawn(&format!(
        "i=0; while :; do i=$((i+1)); echo $i >> {}; done",
        f.display()
    ));
    let pid = g.pid();
    m.add_process(pid).unwrap();
    g.go();
    let count = || std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
    assert!(wait_for(Duration::from_secs(5), || count() > 100));
    m.freeze().unwrap();
    let a = count();
    std::thread::sleep(Duration::from_millis(300));
    let b = count();
    let state = proc_state(pid);
    assert_eq!(a, b, "no progress while frozen");
    assert!(!state.starts_with('R'), "frozen task state {state}");
    eprintln!("frozen busy loop: State {state}, {a} bytes written");
    m.thaw().unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || count() > b),
        "progress after thaw"
    );
    m.kill_all(Signal::KILL).unwrap();
    g.child.wait().unwrap();
}

#[test]
fn pids_limit_stops_a_fork_bomb_v1() {
    let Some(m) = host(&unique(None)) else { return };
    m.apply(
        &LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(5).build().unwrap())
            .build()
            .unwrap(),
    )
    .unwrap();
    let g = Gated::spawn("for i in $(seq 20); do sleep 2 & done; wait");
    m.add_process(g.pid()).unwrap();
    let pids_dir = m.path(Controller::Pids).unwrap().to_path_buf();
    let m2 = &m;
    let watcher = std::thread::scope(|s| {
        let h = s.spawn(|| {
            let mut peak = 0;
            for _ in 0..100 {
                peak = peak.max(m2.pids().map(|p| p.len()).unwrap_or(0));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak
        });
        let out = g.run();
        (out, h.join().unwrap())
    });
    let ((_ok, _stdout, stderr), peak) = watcher;
    assert!(peak <= 5, "at most 5 processes, saw {peak}");
    let events = read(&pids_dir, "pids.events");
    assert!(
        stderr.to_lowercase().contains("fork") || !events.ends_with(" 0"),
        "stderr {stderr:?}, events {events}"
    );
    eprintln!(
        "pids.max=5: peak {peak}, pids.events {events:?}, stderr: {}",
        stderr.lines().next().unwrap_or("")
    );
}

#[test]
fn devices_v1_deny_write_allow_read() {
    let Some(m) = host(&unique(None)) else { return };
    let dev = |allow: bool, access: &str| {
        LinuxDeviceCgroupBuilder::default()
            .allow(allow)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access(access)
            .build()
            .unwrap()
    };
    let deny_all = LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap();
    let apply = |rules: Vec<LinuxDeviceCgroup>| {
        m.apply(
            &LinuxResourcesBuilder::default()
                .devices(rules)
                .build()
                .unwrap(),
        )
        .expect("devices")
    };
    apply(vec![deny_all.clone(), dev(true, "r")]);
    let list = read(m.path(Controller::Devices).unwrap(), "devices.list");
    assert_eq!(list, "c 1:3 r");
    let (w, r, err) = probe_dev_null(&m);
    assert!(!w && r, "write denied, read allowed (stderr {err:?})");
    assert!(err.contains("Operation not permitted"), "{err}");
    apply(vec![deny_all, dev(true, "rw")]);
    let (w, r, _) = probe_dev_null(&m);
    assert!(w && r, "both allowed");
    // A hole in a wider rule cannot be expressed on v1: refused, nothing half-applied.
    let wide = LinuxDeviceCgroupBuilder::default()
        .allow(true)
        .typ(LinuxDeviceType::C)
        .major(1)
        .access("rw")
        .build()
        .unwrap();
    let e = m
        .apply(
            &LinuxResourcesBuilder::default()
                .devices(vec![wide, dev(false, "w")])
                .build()
                .unwrap(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("punch a hole"), "{e}");
}

#[test]
fn parents_created_are_removed_when_empty() {
    let Some(_) = host(&unique(None)) else { return };
    let top = unique(None);
    let mut a = Manager::detect(&top.join("a/leaf")).unwrap();
    a.create().unwrap();
    assert_eq!(a.created_depth(), 3);
    let mut b = Manager::detect(&top.join("b")).unwrap();
    b.create().unwrap();
    assert_eq!(b.created_depth(), 1, "the parent existed");
    let tops: Vec<_> = a
        .paths()
        .iter()
        .map(|p| p.parent().unwrap().parent().unwrap().to_path_buf())
        .collect();
    b.delete().unwrap();
    for t in &tops {
        assert!(t.exists() && !t.join("b").exists());
    }
    // Rebuilt elsewhere (say `fluke delete` in another process): the depth comes back.
    let mut a2 = Manager::detect(&top.join("a/leaf")).unwrap();
    a2.set_created_depth(a.created_depth());
    a2.delete().unwrap();
    for t in &tops {
        assert!(!t.exists(), "{} left behind", t.display());
    }
}

#[test]
fn relative_path_lands_under_our_own_cgroup() {
    if !common::can_run() {
        return;
    }
    let name = format!("fluke-test-rel-{}", std::process::id());
    let mut m = Manager::detect(Path::new(&name)).unwrap();
    let h = m.hierarchies().clone();
    let mem =
        h.v1.iter()
            .find(|v| v.controllers.iter().any(|c| c == "memory"))
            .unwrap();
    let own = mem.own.as_ref().unwrap();
    let want = mem
        .mountpoint
        .join(own.strip_prefix("/").unwrap())
        .join(&name);
    assert_eq!(m.path(Controller::Memory).unwrap(), want);
    m.create().unwrap();
    let g = Guard::new(m);
    assert!(want.join("memory.limit_in_bytes").exists());
    drop(g);
    assert!(!want.exists());
}

#[test]
fn systemd_paths_are_refused() {
    let e = Manager::detect(Path::new("system.slice:fluke:abc")).unwrap_err();
    assert!(matches!(e, Error::Path { .. }), "{e}");
}
