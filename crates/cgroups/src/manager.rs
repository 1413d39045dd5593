//! [`Manager`]: one container's cgroup across every hierarchy.

use std::collections::BTreeSet;
use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use oci_spec::runtime::LinuxResources;
use rustix::fs::{Mode as FileMode, OFlags};
use rustix::process::{Pid, Signal};

use crate::devices::ebpf;
use crate::error::{Error, Result};
use crate::fs;
use crate::hierarchy::{Controller, Hierarchies, Location, Mode};
use crate::path::{default_path, CgroupsPath};
use crate::resources::{self, Ignored, Op, PlanError, Version, Write};
use crate::stats::{self, MemoryEntry, Stats};

/// How long `freeze`/`thaw` wait for the kernel to settle.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long `delete` retries a busy cgroup (processes still exiting).
const REMOVE_TIMEOUT: Duration = Duration::from_secs(3);

/// The freezer state of a cgroup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    /// Freezing requested, not every task stopped yet.
    Freezing,
    Frozen,
}

/// One directory of the container's cgroup.
#[derive(Clone, Debug)]
struct Dir {
    /// Where the cgroupsPath starts (hierarchy root, or this process's own cgroup).
    base: PathBuf,
    /// The container's cgroup.
    path: PathBuf,
}

/// A container's cgroup: its directory in every v1 hierarchy and in the cgroup2 hierarchy,
/// and what to write there.
///
/// In hybrid mode the container gets a directory in every v1 hierarchy (named ones like
/// `name=systemd` included) and in the cgroup2 hierarchy; each resource is written where its
/// controller lives (v1 if mounted there, else cgroup2). In cgroup2 the controllers are
/// enabled in the ancestors' `cgroup.subtree_control`: all available ones at `create` on a
/// pure v2 host, and on a hybrid host only those a resource actually needs, at `apply`.
#[derive(Clone, Debug)]
pub struct Manager {
    hier: Hierarchies,
    cgroups_path: String,
    path: CgroupsPath,
    /// Parallel to `hier.v1`.
    v1: Vec<Dir>,
    unified: Option<Dir>,
    created_depth: usize,
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

fn errno(e: &io::Error) -> Option<i32> {
    e.raw_os_error()
}

impl Manager {
    /// The cgroup `cgroups_path` (the spec's `linux.cgroupsPath`) in `hier`.
    pub fn new(hier: Hierarchies, cgroups_path: &Path) -> Result<Manager> {
        let path = CgroupsPath::parse(cgroups_path)?;
        let dir = |mountpoint: &Path, root: &Path, own: Option<&Path>| -> Result<Dir> {
            Ok(Dir {
                base: path.base(mountpoint, root, own)?,
                path: path.resolve(mountpoint, root, own)?,
            })
        };
        let v1 = hier
            .v1
            .iter()
            .map(|h| dir(&h.mountpoint, &h.root, h.own.as_deref()))
            .collect::<Result<Vec<_>>>()?;
        let unified = hier
            .unified
            .as_ref()
            .map(|u| dir(&u.mountpoint, &u.root, u.own.as_deref()))
            .transpose()?;
        Ok(Manager {
            cgroups_path: cgroups_path.to_string_lossy().into_owned(),
            hier,
            path,
            v1,
            unified,
            created_depth: 1,
        })
    }

    /// For a container: the spec's cgroupsPath, or `/fluke/<id>` when it gives none.
    pub fn for_container(
        hier: Hierarchies,
        cgroups_path: Option<&Path>,
        container_id: &str,
    ) -> Result<Manager> {
        match cgroups_path {
            Some(p) => Manager::new(hier, p),
            None => Manager::new(hier, &default_path(container_id)),
        }
    }

    /// With the hierarchies of this machine.
    pub fn detect(cgroups_path: &Path) -> Result<Manager> {
        Manager::new(Hierarchies::detect()?, cgroups_path)
    }

    pub fn mode(&self) -> Mode {
        self.hier.mode
    }

    pub fn hierarchies(&self) -> &Hierarchies {
        &self.hier
    }

    /// The directory where `c`'s files are, if the controller is available.
    pub fn path(&self, c: Controller) -> Option<&Path> {
        self.location_dir(self.hier.location(c)?)
            .map(|d| d.path.as_path())
    }

    /// The container's directory in the cgroup2 hierarchy.
    pub fn unified_path(&self) -> Option<&Path> {
        self.unified.as_ref().map(|d| d.path.as_path())
    }

    /// Every directory of the container's cgroup (v1 hierarchies first).
    pub fn paths(&self) -> Vec<&Path> {
        self.dirs().map(|d| d.path.as_path()).collect()
    }

    /// How many trailing components of the cgroupsPath `create` made (at least 1, the
    /// leaf); `delete` removes that many levels, the ancestors only if empty. A caller
    /// that rebuilds the manager in another process restores it with
    /// [`set_created_depth`](Self::set_created_depth).
    pub fn created_depth(&self) -> usize {
        self.created_depth
    }

    pub fn set_created_depth(&mut self, depth: usize) {
        self.created_depth = depth.clamp(1, self.path.components().len());
    }

    fn dirs(&self) -> impl Iterator<Item = &Dir> {
        self.v1.iter().chain(self.unified.as_ref())
    }

    fn location_dir(&self, l: Location) -> Option<&Dir> {
        match l {
            Location::V1(i) => self.v1.get(i),
            Location::Unified => self.unified.as_ref(),
        }
    }

    fn primary(&self) -> &Path {
        self.dirs()
            .next()
            .map(|d| d.path.as_path())
            .unwrap_or(Path::new("/"))
    }

    fn controller_dir(&self, c: Controller, file: &str, setting: &str) -> Result<&Path> {
        self.path(c).ok_or_else(|| Error::NotSupported {
            path: PathBuf::from(&self.cgroups_path),
            file: file.to_string(),
            setting: setting.to_string(),
        })
    }

    /// Whether the cgroup exists (its first directory does).
    pub fn exists(&self) -> bool {
        self.primary().join("cgroup.procs").exists()
    }

    /// Creates the cgroup in every hierarchy (existing directories are fine).
    pub fn create(&mut self) -> Result<()> {
        let comps = self.path.components().to_vec();
        let mut depth = 1;
        for (i, d) in self.v1.iter().enumerate() {
            depth = depth.max(mkdir_chain(&d.base, &comps)?);
            if self.hier.v1[i].has(Controller::Cpuset) {
                fill_cpuset(&d.base, &comps)?;
            }
        }
        if let Some(d) = &self.unified {
            depth = depth.max(mkdir_chain(&d.base, &comps)?);
            if self.hier.mode == Mode::Unified {
                // Best effort: a controller that cannot be enabled (say cpu with real-time
                // tasks around) is reported when a resource needs it.
                let _ = self.enable_controllers(None);
            }
        }
        self.created_depth = self.created_depth.max(depth);
        Ok(())
    }

    /// Enables controllers in `cgroup.subtree_control` from the cgroup2 root down to the
    /// container's parent: `want` (v2 names), or every available one (errors ignored).
    fn enable_controllers(&self, want: Option<&BTreeSet<&str>>) -> Result<()> {
        let (Some(u), Some(d)) = (self.hier.unified.as_ref(), self.unified.as_ref()) else {
            return Ok(());
        };
        let Ok(rel) = d.path.strip_prefix(&u.mountpoint) else {
            return Ok(());
        };
        let mut cur = u.mountpoint.clone();
        let comps: Vec<_> = rel.components().collect();
        for (i, comp) in comps.iter().enumerate() {
            let available = fs::read(&cur, "cgroup.controllers")?;
            let enabled = fs::read(&cur, "cgroup.subtree_control")?;
            let has = |list: &str, c: &str| list.split_whitespace().any(|x| x == c);
            match want {
                None => {
                    for c in available.split_whitespace().filter(|c| !has(&enabled, c)) {
                        let _ = fs::write(&cur, "cgroup.subtree_control", &format!("+{c}"));
                    }
                }
                Some(want) => {
                    for c in want.iter().filter(|c| !has(&enabled, c)) {
                        if !has(&available, c) {
                            return Err(Error::NotSupported {
                                path: cur.clone(),
                                file: "cgroup.controllers".into(),
                                setting: format!("the {c} controller"),
                            });
                        }
                        fs::write(&cur, "cgroup.subtree_control", &format!("+{c}"))?;
                    }
                }
            }
            if i + 1 < comps.len() {
                cur.push(comp);
            }
        }
        Ok(())
    }

    /// Applies the resources; returns the settings skipped because this cgroup version
    /// cannot express them. Nothing is written if the plan cannot be made (unsupported
    /// controller, invalid value).
    pub fn apply(&self, r: &LinuxResources) -> Result<Vec<Ignored>> {
        let names = match self.hier.mode {
            Mode::Unified => Version::V2,
            Mode::Legacy | Mode::Hybrid => Version::V1,
        };
        let plan = resources::plan(
            r,
            &|c| self.hier.version(c),
            self.hier.unified.is_some(),
            names,
        )
        .map_err(|e| match e {
            PlanError::NotSupported { file, setting } => Error::NotSupported {
                path: PathBuf::from(&self.cgroups_path),
                file,
                setting: setting.to_string(),
            },
            PlanError::Invalid { file, reason } => Error::Invalid {
                path: PathBuf::from(&self.cgroups_path),
                file,
                reason,
            },
        })?;
        // The cgroup2 controllers the writes need, enabled on the way down.
        let mut need: BTreeSet<&str> = BTreeSet::new();
        let available = self.hier.unified.as_ref().map(|u| &u.controllers);
        for op in &plan.ops {
            match op {
                Op::Write(w) if w.version == Version::V2 => match w.controller {
                    Some(c) => need.extend(c.v2_name()),
                    None => {
                        let key = &w.candidates[0].0;
                        let prefix = key.split('.').next().unwrap_or("");
                        if available.is_some_and(|a| a.iter().any(|c| c == prefix)) {
                            need.insert(prefix);
                        }
                    }
                },
                Op::CpuMaxV2 { .. } => {
                    need.insert("cpu");
                }
                _ => {}
            }
        }
        if !need.is_empty() {
            self.enable_controllers(Some(&need))?;
        }
        for op in &plan.ops {
            self.execute(op)?;
        }
        Ok(plan.ignored)
    }

    fn write_dir(&self, w: &Write) -> Result<&Path> {
        match w.controller {
            Some(c) => self.controller_dir(c, &w.candidates[0].0, w.setting),
            None => self.unified_path().ok_or_else(|| Error::NotSupported {
                path: PathBuf::from(&self.cgroups_path),
                file: w.candidates[0].0.clone(),
                setting: "linux.resources.unified (no cgroup2 hierarchy)".into(),
            }),
        }
    }

    fn execute(&self, op: &Op) -> Result<()> {
        match op {
            Op::Write(w) => {
                let dir = self.write_dir(w)?;
                for (file, value) in &w.candidates {
                    match fs::write_raw(dir, file, value) {
                        Ok(()) => return Ok(()),
                        Err(e) if not_found(&e) => continue,
                        Err(source) => {
                            return Err(Error::Write {
                                path: dir.to_path_buf(),
                                file: file.clone(),
                                value: value.clone(),
                                source,
                            })
                        }
                    }
                }
                if w.required {
                    let files: Vec<&str> = w.candidates.iter().map(|(f, _)| f.as_str()).collect();
                    return Err(Error::NotSupported {
                        path: dir.to_path_buf(),
                        file: files.join(" or "),
                        setting: w.setting.to_string(),
                    });
                }
                Ok(())
            }
            Op::MemoryV1 {
                limit,
                memsw,
                memsw_required,
            } => {
                let dir =
                    self.controller_dir(Controller::Memory, "memory.limit_in_bytes", "memory")?;
                let write_memsw =
                    |v: &str| match fs::write_raw(dir, "memory.memsw.limit_in_bytes", v) {
                        Ok(()) => Ok(()),
                        Err(e) if not_found(&e) && !memsw_required => Ok(()),
                        Err(e) if not_found(&e) => Err(Error::NotSupported {
                            path: dir.to_path_buf(),
                            file: "memory.memsw.limit_in_bytes".into(),
                            setting: "memory.swap (swap accounting is off: swapaccount=1)".into(),
                        }),
                        Err(source) => Err(Error::Write {
                            path: dir.to_path_buf(),
                            file: "memory.memsw.limit_in_bytes".into(),
                            value: v.to_string(),
                            source,
                        }),
                    };
                match (limit, memsw) {
                    (Some(l), Some(s)) => {
                        // memsw must stay ≥ the limit after each write: raise memsw first when
                        // it grows past the current limit, else lower the limit first.
                        let current =
                            fs::read_u64_opt(dir, "memory.limit_in_bytes")?.unwrap_or(u64::MAX);
                        let memsw_first = s == "-1" || s.parse::<u64>().is_ok_and(|s| s > current);
                        if memsw_first {
                            write_memsw(s)?;
                            fs::write(dir, "memory.limit_in_bytes", l)?;
                        } else {
                            fs::write(dir, "memory.limit_in_bytes", l)?;
                            write_memsw(s)?;
                        }
                    }
                    (Some(l), None) => fs::write(dir, "memory.limit_in_bytes", l)?,
                    (None, Some(s)) => write_memsw(s)?,
                    (None, None) => {}
                }
                Ok(())
            }
            Op::CpuBandwidthV1 { quota, period } => {
                let dir = self.controller_dir(Controller::Cpu, "cpu.cfs_quota_us", "cpu.quota")?;
                let mut retry_period = None;
                if let Some(p) = period {
                    let v = p.to_string();
                    match fs::write_raw(dir, "cpu.cfs_period_us", &v) {
                        Ok(()) => {}
                        // A shorter period can be refused until the quota is lowered.
                        Err(e)
                            if errno(&e) == Some(rustix::io::Errno::INVAL.raw_os_error())
                                && quota.is_some() =>
                        {
                            retry_period = Some(v)
                        }
                        Err(source) => {
                            return Err(Error::Write {
                                path: dir.to_path_buf(),
                                file: "cpu.cfs_period_us".into(),
                                value: v,
                                source,
                            })
                        }
                    }
                }
                if let Some(q) = quota {
                    fs::write(dir, "cpu.cfs_quota_us", &q.to_string())?;
                }
                if let Some(v) = retry_period {
                    fs::write(dir, "cpu.cfs_period_us", &v)?;
                }
                Ok(())
            }
            Op::CpuMaxV2 { quota, period } => {
                let dir = self.controller_dir(Controller::Cpu, "cpu.max", "cpu.quota")?;
                let q = |q: i64| {
                    if q < 0 {
                        "max".to_string()
                    } else {
                        q.to_string()
                    }
                };
                let value = match (quota, period) {
                    (Some(qv), Some(p)) => format!("{} {p}", q(*qv)),
                    (Some(qv), None) => q(*qv),
                    (None, Some(p)) => {
                        let cur = fs::read(dir, "cpu.max")?;
                        let cur = cur.split_whitespace().next().unwrap_or("max").to_string();
                        format!("{cur} {p}")
                    }
                    (None, None) => return Ok(()),
                };
                fs::write(dir, "cpu.max", &value)
            }
            Op::CheckMemoryUsage { version, limit } => {
                let (usage_file, limit_file) = match version {
                    Version::V1 => ("memory.usage_in_bytes", "memory.limit_in_bytes"),
                    Version::V2 => ("memory.current", "memory.max"),
                };
                let dir = self.controller_dir(
                    Controller::Memory,
                    limit_file,
                    "memory.checkBeforeUpdate",
                )?;
                if let Some(usage) = fs::read_u64_opt(dir, usage_file)? {
                    if usage > *limit as u64 {
                        return Err(Error::Invalid {
                            path: dir.to_path_buf(),
                            file: limit_file.into(),
                            reason: format!("the new limit {limit} is below the current usage {usage} (memory.checkBeforeUpdate)"),
                        });
                    }
                }
                Ok(())
            }
            Op::DevicesV1(writes) => {
                let dir = self.controller_dir(Controller::Devices, "devices.allow", "devices")?;
                for (file, line) in writes {
                    fs::write(dir, file, line)?;
                }
                Ok(())
            }
            Op::DevicesV2(rules) => {
                let dir = self.controller_dir(Controller::Devices, "devices", "devices")?;
                let fd = rustix::fs::open(
                    dir,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    FileMode::empty(),
                )
                .map_err(|e| Error::io(dir, ".", e.into()))?;
                ebpf::apply(fd.as_fd(), rules).map_err(|e| Error::Bpf {
                    path: dir.to_path_buf(),
                    file: e.step().into(),
                    source: e.into_source(),
                })
            }
        }
    }

    /// Moves process `pid` (all its threads) into the cgroup, in every hierarchy.
    pub fn add_process(&self, pid: u32) -> Result<()> {
        for d in self.dirs() {
            fs::write(&d.path, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    /// Every process in the cgroup and its descendants, in every hierarchy, sorted.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let mut all = BTreeSet::new();
        for d in self.dirs() {
            procs_recursive(&d.path, &mut all)?;
        }
        Ok(all.into_iter().collect())
    }

    fn freezer(&self) -> Result<(Version, &Path)> {
        match self.hier.location(Controller::Freezer) {
            Some(l @ Location::V1(_)) => {
                Ok((Version::V1, &self.location_dir(l).expect("v1 dir").path))
            }
            Some(Location::Unified) => Ok((Version::V2, self.unified_path().expect("unified dir"))),
            None => Err(Error::NotSupported {
                path: PathBuf::from(&self.cgroups_path),
                file: "freezer.state".into(),
                setting: "freezing (no freezer hierarchy)".into(),
            }),
        }
    }

    /// The freezer state.
    pub fn state(&self) -> Result<FreezerState> {
        let (v, dir) = self.freezer()?;
        match v {
            Version::V1 => {
                let s = fs::read(dir, "freezer.state")?;
                match s.trim() {
                    "THAWED" => Ok(FreezerState::Thawed),
                    "FREEZING" => Ok(FreezerState::Freezing),
                    "FROZEN" => Ok(FreezerState::Frozen),
                    _ => Err(Error::Parse {
                        path: dir.to_path_buf(),
                        file: "freezer.state".into(),
                        content: s,
                    }),
                }
            }
            Version::V2 => {
                let want = fs::read(dir, "cgroup.freeze")?;
                if want.trim() != "1" {
                    return Ok(FreezerState::Thawed);
                }
                Ok(if frozen_v2(dir)? {
                    FreezerState::Frozen
                } else {
                    FreezerState::Freezing
                })
            }
        }
    }

    /// Freezes every process in the cgroup and waits until the kernel says they all are.
    /// On timeout the cgroup is thawed again and an error returned.
    pub fn freeze(&self) -> Result<()> {
        self.set_frozen(true)
    }

    /// Thaws the cgroup and waits for it.
    pub fn thaw(&self) -> Result<()> {
        self.set_frozen(false)
    }

    fn set_frozen(&self, frozen: bool) -> Result<()> {
        let (v, dir) = self.freezer()?;
        let start = Instant::now();
        let mut delay = Duration::from_micros(100);
        let mut tries = 0u32;
        loop {
            let settled = match v {
                Version::V1 => {
                    let want = if frozen { "FROZEN" } else { "THAWED" };
                    // A freeze can stall in FREEZING (a task in an uninterruptible sleep);
                    // thawing and freezing again now and then gets it going, as runc does.
                    if frozen && tries % 50 == 49 {
                        fs::write(dir, "freezer.state", "THAWED")?;
                    }
                    fs::write(dir, "freezer.state", want)?;
                    fs::read(dir, "freezer.state")?.trim() == want
                }
                Version::V2 => {
                    if tries == 0 {
                        fs::write(dir, "cgroup.freeze", if frozen { "1" } else { "0" })?;
                    }
                    frozen_v2(dir)? == frozen
                }
            };
            if settled {
                return Ok(());
            }
            if start.elapsed() > FREEZE_TIMEOUT {
                let file = match v {
                    Version::V1 => "freezer.state",
                    Version::V2 => "cgroup.events",
                };
                if frozen {
                    let _ = self.set_frozen(false);
                }
                return Err(Error::Timeout {
                    path: dir.to_path_buf(),
                    file: file.into(),
                    state: if frozen { "not frozen" } else { "not thawed" }.into(),
                    waited: start.elapsed(),
                });
            }
            sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(10));
            tries += 1;
        }
    }

    /// Sends `signal` to every process in the cgroup. SIGKILL uses `cgroup.kill` where the
    /// kernel has it (5.14+, v2), which also catches processes forking meanwhile; otherwise
    /// the cgroup is frozen while the signals go out, so nothing escapes by forking, and
    /// thawed again (unless it was frozen before and the signal is not SIGKILL).
    pub fn kill_all(&self, signal: Signal) -> Result<()> {
        if signal == Signal::KILL {
            if let Some(dir) = self.unified_path() {
                match fs::write_raw(dir, "cgroup.kill", "1") {
                    Ok(()) if self.hier.mode == Mode::Unified => return Ok(()),
                    Ok(()) => {}
                    Err(e) if not_found(&e) => {}
                    Err(source) => {
                        return Err(Error::Write {
                            path: dir.to_path_buf(),
                            file: "cgroup.kill".into(),
                            value: "1".into(),
                            source,
                        })
                    }
                }
            }
        }
        let was_frozen = matches!(self.state(), Ok(FreezerState::Frozen));
        let froze = !was_frozen && self.freeze().is_ok();
        let sent = self.pids().map(|pids| {
            for pid in pids {
                if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
                    // Gone already: fine.
                    let _ = rustix::process::kill_process(pid, signal);
                }
            }
        });
        if froze || (was_frozen && signal == Signal::KILL) {
            self.thaw()?;
        }
        sent
    }

    /// Removes the cgroup (and any cgroup below it) from every hierarchy, retrying for a
    /// while as long as processes are still leaving; then removes the ancestors `create`
    /// made, if they are empty. A cgroup already gone is fine. Processes still inside make
    /// this fail: [`kill_all`](Self::kill_all) them first.
    pub fn delete(&self) -> Result<()> {
        for d in self.dirs() {
            remove_tree(&d.path)?;
        }
        for d in self.dirs() {
            let mut cur = d.path.parent();
            for _ in 1..self.created_depth {
                let Some(p) = cur.filter(|p| p.starts_with(&d.base) && *p != d.base) else {
                    break;
                };
                match std::fs::remove_dir(p) {
                    Ok(()) => {}
                    Err(e) if not_found(&e) => {}
                    // In use by another container (or not ours): leave it.
                    Err(_) => break,
                }
                cur = p.parent();
            }
        }
        Ok(())
    }

    /// Resource usage (missing files, e.g. for controllers not available, leave zeros).
    pub fn stats(&self) -> Result<Stats> {
        // Fails if the cgroup is gone.
        fs::read(self.primary(), "cgroup.procs")?;
        let mut s = Stats::default();
        let loc = |c| {
            self.hier
                .location(c)
                .and_then(|l| Some((l, &self.location_dir(l)?.path)))
        };

        match loc(Controller::Cpuacct) {
            Some((Location::V1(_), dir)) => {
                let u = &mut s.cpu.usage;
                u.total = fs::read_u64_opt(dir, "cpuacct.usage")?.unwrap_or(0);
                match (
                    fs::read_u64_opt(dir, "cpuacct.usage_user")?,
                    fs::read_u64_opt(dir, "cpuacct.usage_sys")?,
                ) {
                    (Some(user), Some(sys)) => (u.user, u.kernel) = (user, sys),
                    _ => {
                        // USER_HZ is 100 for every user-visible tick count.
                        let st = stats::parse_flat_keyed(
                            &fs::read_opt(dir, "cpuacct.stat")?.unwrap_or_default(),
                        );
                        u.user = st.get("user").copied().unwrap_or(0) * 10_000_000;
                        u.kernel = st.get("system").copied().unwrap_or(0) * 10_000_000;
                    }
                }
                if let Some(t) = fs::read_opt(dir, "cpuacct.usage_percpu")? {
                    u.percpu = t
                        .split_whitespace()
                        .filter_map(|v| v.parse().ok())
                        .collect();
                }
            }
            Some((Location::Unified, dir)) => {
                let st =
                    stats::parse_flat_keyed(&fs::read_opt(dir, "cpu.stat")?.unwrap_or_default());
                let g = |k: &str| st.get(k).copied().unwrap_or(0);
                s.cpu.usage.total = g("usage_usec") * 1000;
                s.cpu.usage.user = g("user_usec") * 1000;
                s.cpu.usage.kernel = g("system_usec") * 1000;
                s.cpu.throttling.periods = g("nr_periods");
                s.cpu.throttling.throttled_periods = g("nr_throttled");
                s.cpu.throttling.throttled_time = g("throttled_usec") * 1000;
            }
            None => {}
        }
        if let Some((Location::V1(_), dir)) = loc(Controller::Cpu) {
            let st = stats::parse_flat_keyed(&fs::read_opt(dir, "cpu.stat")?.unwrap_or_default());
            let g = |k: &str| st.get(k).copied().unwrap_or(0);
            s.cpu.throttling.periods = g("nr_periods");
            s.cpu.throttling.throttled_periods = g("nr_throttled");
            s.cpu.throttling.throttled_time = g("throttled_time");
        }

        match loc(Controller::Memory) {
            Some((Location::V1(_), dir)) => {
                let m = &mut s.memory;
                m.usage = memory_entry_v1(dir, "memory")?;
                m.swap = memory_entry_v1(dir, "memory.memsw")?;
                m.kernel = memory_entry_v1(dir, "memory.kmem")?;
                m.kernel_tcp = memory_entry_v1(dir, "memory.kmem.tcp")?;
                m.raw =
                    stats::parse_flat_keyed(&fs::read_opt(dir, "memory.stat")?.unwrap_or_default());
                m.cache = m.raw.get("cache").copied().unwrap_or(0);
            }
            Some((Location::Unified, dir)) => {
                let m = &mut s.memory;
                let events = stats::parse_flat_keyed(
                    &fs::read_opt(dir, "memory.events")?.unwrap_or_default(),
                );
                m.usage = MemoryEntry {
                    usage: fs::read_u64_opt(dir, "memory.current")?.unwrap_or(0),
                    limit: fs::read_u64_opt(dir, "memory.max")?.unwrap_or(u64::MAX),
                    max: fs::read_u64_opt(dir, "memory.peak")?.unwrap_or(0),
                    failcnt: events.get("max").copied().unwrap_or(0),
                };
                let swap_events = stats::parse_flat_keyed(
                    &fs::read_opt(dir, "memory.swap.events")?.unwrap_or_default(),
                );
                m.swap = MemoryEntry {
                    usage: fs::read_u64_opt(dir, "memory.swap.current")?
                        .unwrap_or(0)
                        .saturating_add(m.usage.usage),
                    limit: fs::read_u64_opt(dir, "memory.swap.max")?
                        .unwrap_or(u64::MAX)
                        .saturating_add(m.usage.limit),
                    max: fs::read_u64_opt(dir, "memory.swap.peak")?.unwrap_or(0),
                    failcnt: swap_events.get("max").copied().unwrap_or(0),
                };
                m.raw =
                    stats::parse_flat_keyed(&fs::read_opt(dir, "memory.stat")?.unwrap_or_default());
                m.cache = m.raw.get("file").copied().unwrap_or(0);
            }
            None => {}
        }

        if let Some((_, dir)) = loc(Controller::Pids) {
            s.pids.current = fs::read_u64_opt(dir, "pids.current")?.unwrap_or(0);
            s.pids.limit = match fs::read_u64_opt(dir, "pids.max")? {
                Some(u64::MAX) | None => 0,
                Some(n) => n,
            };
        }

        match loc(Controller::Blkio) {
            Some((Location::V1(_), dir)) => {
                let read = |f: &str| -> Result<Vec<stats::BlkioEntry>> {
                    Ok(stats::parse_blkio_v1(
                        &fs::read_opt(dir, f)?.unwrap_or_default(),
                    ))
                };
                let bfq = read("blkio.bfq.io_service_bytes_recursive")?;
                if bfq.is_empty() {
                    s.blkio.io_service_bytes_recursive =
                        read("blkio.throttle.io_service_bytes_recursive")?;
                    s.blkio.io_serviced_recursive = read("blkio.throttle.io_serviced_recursive")?;
                } else {
                    s.blkio.io_service_bytes_recursive = bfq;
                    s.blkio.io_serviced_recursive = read("blkio.bfq.io_serviced_recursive")?;
                }
            }
            Some((Location::Unified, dir)) => {
                s.blkio = stats::parse_io_stat(&fs::read_opt(dir, "io.stat")?.unwrap_or_default());
            }
            None => {}
        }

        if let Some((l, dir)) = loc(Controller::Hugetlb) {
            for size in stats::hugepage_sizes() {
                let p = format!("hugetlb.{size}");
                let h = match l {
                    Location::V1(_) => stats::HugetlbStats {
                        usage: fs::read_u64_opt(dir, &format!("{p}.usage_in_bytes"))?.unwrap_or(0),
                        max: fs::read_u64_opt(dir, &format!("{p}.max_usage_in_bytes"))?
                            .unwrap_or(0),
                        failcnt: fs::read_u64_opt(dir, &format!("{p}.failcnt"))?.unwrap_or(0),
                    },
                    Location::Unified => {
                        let ev = stats::parse_flat_keyed(
                            &fs::read_opt(dir, &format!("{p}.events"))?.unwrap_or_default(),
                        );
                        stats::HugetlbStats {
                            usage: fs::read_u64_opt(dir, &format!("{p}.current"))?.unwrap_or(0),
                            max: 0,
                            failcnt: ev.get("max").copied().unwrap_or(0),
                        }
                    }
                };
                s.hugetlb.insert(size, h);
            }
        }
        Ok(s)
    }
}

fn memory_entry_v1(dir: &Path, prefix: &str) -> Result<MemoryEntry> {
    Ok(MemoryEntry {
        usage: fs::read_u64_opt(dir, &format!("{prefix}.usage_in_bytes"))?.unwrap_or(0),
        max: fs::read_u64_opt(dir, &format!("{prefix}.max_usage_in_bytes"))?.unwrap_or(0),
        limit: fs::read_u64_opt(dir, &format!("{prefix}.limit_in_bytes"))?.unwrap_or(0),
        failcnt: fs::read_u64_opt(dir, &format!("{prefix}.failcnt"))?.unwrap_or(0),
    })
}

/// `frozen 1` in a v2 cgroup's `cgroup.events`.
fn frozen_v2(dir: &Path) -> Result<bool> {
    let ev = fs::read(dir, "cgroup.events")?;
    Ok(stats::parse_flat_keyed(&ev).get("frozen") == Some(&1))
}

/// Creates `base/comps…` one level at a time; returns how many trailing levels were new
/// (at least 1). A level removed by someone else meanwhile (another container's `delete`
/// pruning a shared parent) makes it start over.
fn mkdir_chain(base: &Path, comps: &[String]) -> Result<usize> {
    let mut created_from: Option<usize> = None;
    for _attempt in 0..5 {
        let mut d = base.to_path_buf();
        let mut vanished = None;
        for (i, c) in comps.iter().enumerate() {
            d.push(c);
            match std::fs::create_dir(&d) {
                Ok(()) => created_from = Some(created_from.map_or(i, |f| f.min(i))),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) if not_found(&e) => {
                    vanished = Some(e);
                    break;
                }
                Err(e) => return Err(Error::io(d, "(mkdir)", e)),
            }
        }
        match vanished {
            None => return Ok(created_from.map_or(1, |i| comps.len() - i)),
            Some(e) if !base.exists() => return Err(Error::io(base, "(mkdir)", e)),
            Some(_) => continue,
        }
    }
    Err(Error::io(
        base,
        "(mkdir)",
        io::Error::new(io::ErrorKind::NotFound, "parent cgroups kept disappearing"),
    ))
}

/// v1 cpuset: a new cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and refuses tasks;
/// give every empty level its parent's effective values.
fn fill_cpuset(base: &Path, comps: &[String]) -> Result<()> {
    let mut parent = base.to_path_buf();
    for c in comps {
        let dir = parent.join(c);
        for (file, src) in [
            ("cpuset.cpus", "cpuset.effective_cpus"),
            ("cpuset.mems", "cpuset.effective_mems"),
        ] {
            if fs::read(&dir, file)?.trim().is_empty() {
                let value = match fs::read_opt(&parent, src)? {
                    Some(v) if !v.trim().is_empty() => v,
                    _ => fs::read(&parent, file)?,
                };
                fs::write(&dir, file, value.trim())?;
            }
        }
        parent = dir;
    }
    Ok(())
}

fn procs_recursive(dir: &Path, out: &mut BTreeSet<u32>) -> Result<()> {
    let Some(text) = fs::read_opt(dir, "cgroup.procs")? else {
        return Ok(());
    };
    out.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::io(dir, ".", e)),
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            procs_recursive(&e.path(), out)?;
        }
    }
    Ok(())
}

/// Removes `dir` and every cgroup below it, deepest first.
fn remove_tree(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::io(dir, ".", e)),
    };
    for e in entries.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&e.path())?;
        }
    }
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if not_found(&e) => return Ok(()),
            Err(e)
                if errno(&e) == Some(rustix::io::Errno::BUSY.raw_os_error())
                    && start.elapsed() < REMOVE_TIMEOUT =>
            {
                sleep(delay);
                delay = (delay * 2).min(Duration::from_millis(50));
            }
            Err(source) => {
                return Err(Error::Remove {
                    path: dir.to_path_buf(),
                    source,
                })
            }
        }
    }
}
