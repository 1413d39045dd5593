//! OCI `linux.resources` → cgroup file writes, for v1 and v2: a pure [`plan`] that the
//! [`Manager`](crate::Manager) executes.
//!
//! As in runc, a zero memory limit/reservation/swap, CPU shares/quota/period or real-time
//! value means "unset" (Go's zero value is what most generators write for "not given").

use std::collections::BTreeMap;

use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};

use crate::devices::{self, DeviceRule};
use crate::hierarchy::Controller;

/// The cgroup version a controller is used with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// A setting the spec gives that this cgroup version has no way to apply; it is skipped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ignored {
    /// The OCI field, e.g. `memory.kernel`.
    pub setting: &'static str,
    pub reason: &'static str,
}

/// One value for one control file: the first candidate file that exists is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Write {
    /// The controller whose directory holds the file; `None` for a file of the cgroup2
    /// directory itself (the `unified` map).
    pub controller: Option<Controller>,
    pub version: Version,
    /// `(file, value)` in order of preference.
    pub candidates: Vec<(String, String)>,
    /// The OCI field the value comes from.
    pub setting: &'static str,
    /// Whether a missing file is an error (the spec asked for this) or is skipped.
    pub required: bool,
}

/// One step of a plan.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Write(Write),
    /// v1 `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes`, written in the order
    /// that keeps memsw ≥ limit at every step (it depends on the current limit).
    MemoryV1 {
        limit: Option<String>,
        memsw: Option<String>,
        memsw_required: bool,
    },
    /// v1 `cpu.cfs_period_us` then `cpu.cfs_quota_us` (period retried after the quota when
    /// the kernel refuses it first).
    CpuBandwidthV1 {
        quota: Option<i64>,
        period: Option<u64>,
    },
    /// v2 `cpu.max`; a missing half keeps its current value.
    CpuMaxV2 {
        quota: Option<i64>,
        period: Option<u64>,
    },
    /// `memory.checkBeforeUpdate`: refuse a limit below the current usage.
    CheckMemoryUsage {
        version: Version,
        limit: i64,
    },
    /// v1 device rules as `(devices.allow|devices.deny, line)` writes.
    DevicesV1(Vec<(&'static str, String)>),
    /// v2 device rules, for the eBPF program.
    DevicesV2(Vec<DeviceRule>),
}

/// What applying a `LinuxResources` takes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub ignored: Vec<Ignored>,
}

/// Why no plan could be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlanError {
    /// The spec asks for a controller that is not available.
    NotSupported { file: String, setting: &'static str },
    /// A value is out of range or contradicts another.
    Invalid { file: String, reason: String },
}

fn invalid(file: &str, reason: impl Into<String>) -> PlanError {
    PlanError::Invalid {
        file: file.to_string(),
        reason: reason.into(),
    }
}

/// CPU shares (v1, 2–262144) to `cpu.weight` (v2, 1–10000): `1 + ((shares - 2) * 9999) / 262142`.
pub fn shares_to_weight(shares: u64) -> u64 {
    let s = shares.clamp(2, 262_144);
    1 + ((s - 2) * 9999) / 262_142
}

/// blkio weight (v1, 10–1000) to `io.weight` (v2, 1–10000): `1 + (weight - 10) * 9999 / 990`.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// OCI `memory.swap` is memory+swap (v1 memsw); v2 `memory.swap.max` counts swap alone:
/// `swap - limit`. `None` when nothing is to be written. Unlimited memory with swap unset
/// also means unlimited swap, as on v1.
pub fn swap_v2(limit: Option<i64>, swap: Option<i64>) -> Result<Option<String>, String> {
    let limit = limit.filter(|&v| v != 0);
    match swap.filter(|&v| v != 0) {
        None => Ok((limit == Some(-1)).then(|| "max".to_string())),
        Some(-1) => Ok(Some("max".into())),
        Some(s) if s < 0 => Err(format!("memory.swap {s} is invalid (use -1 for unlimited)")),
        Some(s) => match limit {
            None | Some(-1) => Err(
                "memory.swap needs a memory.limit on cgroup v2 (swap.max = swap - limit)".into(),
            ),
            Some(l) if l < 0 => Err(format!("memory.limit {l} is invalid")),
            Some(l) if s < l => Err(format!(
                "memory.swap {s} (memory+swap) is below memory.limit {l}"
            )),
            Some(l) => Ok(Some((s - l).to_string())),
        },
    }
}

fn devs<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|v| !v.is_empty())
}

fn nz(v: Option<i64>) -> Option<i64> {
    v.filter(|&v| v != 0)
}

/// A memory amount: -1 is unlimited (`-1` on v1, `max` on v2).
fn mem_value(file: &str, v: i64, version: Version) -> Result<String, PlanError> {
    match v {
        -1 => Ok(match version {
            Version::V1 => "-1".into(),
            Version::V2 => "max".into(),
        }),
        v if v > 0 => Ok(v.to_string()),
        v => Err(invalid(
            file,
            format!("{v} is not a memory amount (or -1 for unlimited)"),
        )),
    }
}

struct Planner<'a> {
    version: &'a dyn Fn(Controller) -> Option<Version>,
    /// Which version's file names errors use for a controller that is nowhere.
    names: Version,
    plan: Plan,
}

impl Planner<'_> {
    /// The version `c` is used with, or the error for a setting that needs it.
    /// `file` is the v1 name; errors on a v2 host give the v2 one.
    fn need(&self, c: Controller, file: &str, setting: &'static str) -> Result<Version, PlanError> {
        (self.version)(c).ok_or_else(|| {
            let file = match (self.names, file) {
                (Version::V2, "memory.limit_in_bytes") => "memory.max",
                (Version::V2, "cpu.shares") => "cpu.weight",
                (Version::V2, "blkio.weight") => "io.weight",
                (Version::V2, "devices.allow") => "(device filter program)",
                (_, f) => f,
            };
            PlanError::NotSupported {
                file: file.to_string(),
                setting,
            }
        })
    }

    fn write(
        &mut self,
        c: Controller,
        v: Version,
        file: &str,
        value: String,
        setting: &'static str,
    ) {
        self.plan.ops.push(Op::Write(Write {
            controller: Some(c),
            version: v,
            candidates: vec![(file.to_string(), value)],
            setting,
            required: true,
        }));
    }

    fn ignore(&mut self, setting: &'static str, reason: &'static str) {
        self.plan.ignored.push(Ignored { setting, reason });
    }

    fn cpuset(&mut self, cpu: &LinuxCpu) -> Result<(), PlanError> {
        for (value, file, setting) in [
            (cpu.cpus(), "cpuset.cpus", "cpu.cpus"),
            (cpu.mems(), "cpuset.mems", "cpu.mems"),
        ] {
            if let Some(value) = value.as_deref().filter(|s| !s.trim().is_empty()) {
                let v = self.need(Controller::Cpuset, file, setting)?;
                self.write(
                    Controller::Cpuset,
                    v,
                    file,
                    value.trim().to_string(),
                    setting,
                );
            }
        }
        Ok(())
    }

    fn memory(&mut self, m: &LinuxMemory) -> Result<(), PlanError> {
        let limit = nz(m.limit());
        let reservation = nz(m.reservation());
        let swap = nz(m.swap());
        if m.kernel().is_some() {
            self.ignore("memory.kernel", "kernel memory limits were removed from Linux (5.16+); kernel memory counts in the memory limit");
        }
        if m.use_hierarchy().is_some() {
            self.ignore(
                "memory.useHierarchy",
                "hierarchical accounting is always on in current kernels",
            );
        }
        let wants = limit.is_some()
            || reservation.is_some()
            || swap.is_some()
            || m.kernel_tcp().is_some()
            || m.swappiness().is_some()
            || m.disable_oom_killer() == Some(true);
        if !wants {
            return Ok(());
        }
        let c = Controller::Memory;
        let v = self.need(c, "memory.limit_in_bytes", "memory")?;
        if let (Some(true), Some(l)) = (m.check_before_update(), limit) {
            if l > 0 {
                self.plan.ops.push(Op::CheckMemoryUsage {
                    version: v,
                    limit: l,
                });
            }
        }
        match v {
            Version::V1 => {
                let lim = limit
                    .map(|l| mem_value("memory.limit_in_bytes", l, v))
                    .transpose()?;
                let memsw = match swap {
                    Some(s) => {
                        if let (Some(l), true) = (limit, s > 0) {
                            if l > 0 && s < l {
                                return Err(invalid(
                                    "memory.memsw.limit_in_bytes",
                                    format!(
                                        "memory.swap {s} (memory+swap) is below memory.limit {l}"
                                    ),
                                ));
                            }
                        }
                        Some(mem_value("memory.memsw.limit_in_bytes", s, v)?)
                    }
                    // Unlimited memory, swap unset: unlimited memory+swap too.
                    None if limit == Some(-1) => Some("-1".to_string()),
                    None => None,
                };
                if lim.is_some() || memsw.is_some() {
                    self.plan.ops.push(Op::MemoryV1 {
                        limit: lim,
                        memsw,
                        memsw_required: swap.is_some(),
                    });
                }
                if let Some(r) = reservation {
                    let val = mem_value("memory.soft_limit_in_bytes", r, v)?;
                    self.write(
                        c,
                        v,
                        "memory.soft_limit_in_bytes",
                        val,
                        "memory.reservation",
                    );
                }
                if let Some(t) = m.kernel_tcp() {
                    let val = mem_value("memory.kmem.tcp.limit_in_bytes", t, v)?;
                    self.write(
                        c,
                        v,
                        "memory.kmem.tcp.limit_in_bytes",
                        val,
                        "memory.kernelTCP",
                    );
                }
                if let Some(s) = m.swappiness() {
                    if s > 100 {
                        return Err(invalid("memory.swappiness", format!("{s} is above 100")));
                    }
                    self.write(
                        c,
                        v,
                        "memory.swappiness",
                        s.to_string(),
                        "memory.swappiness",
                    );
                }
                if m.disable_oom_killer() == Some(true) {
                    self.write(
                        c,
                        v,
                        "memory.oom_control",
                        "1".into(),
                        "memory.disableOOMKiller",
                    );
                }
            }
            Version::V2 => {
                if let Some(l) = limit {
                    let val = mem_value("memory.max", l, v)?;
                    self.write(c, v, "memory.max", val, "memory.limit");
                }
                let sw = swap_v2(limit, swap).map_err(|e| invalid("memory.swap.max", e))?;
                if let Some(val) = sw {
                    self.plan.ops.push(Op::Write(Write {
                        controller: Some(c),
                        version: v,
                        candidates: vec![("memory.swap.max".into(), val)],
                        setting: "memory.swap",
                        // Implied by an unlimited memory.limit: skipped without swap support.
                        required: swap.is_some(),
                    }));
                }
                if let Some(r) = reservation {
                    let val = mem_value("memory.low", r, v)?;
                    self.write(c, v, "memory.low", val, "memory.reservation");
                }
                if m.kernel_tcp().is_some() {
                    self.ignore(
                        "memory.kernelTCP",
                        "cgroup v2 has no separate TCP buffer limit",
                    );
                }
                if m.swappiness().is_some() {
                    self.ignore(
                        "memory.swappiness",
                        "cgroup v2 has no per-cgroup swappiness",
                    );
                }
                if m.disable_oom_killer() == Some(true) {
                    self.ignore(
                        "memory.disableOOMKiller",
                        "cgroup v2 cannot disable the OOM killer",
                    );
                }
            }
        }
        Ok(())
    }

    fn cpu(&mut self, cpu: &LinuxCpu) -> Result<(), PlanError> {
        let shares = cpu.shares().filter(|&s| s != 0);
        let quota = nz(cpu.quota());
        let period = cpu.period().filter(|&p| p != 0);
        let rt_runtime = nz(cpu.realtime_runtime());
        let rt_period = cpu.realtime_period().filter(|&p| p != 0);
        if let Some(q) = quota {
            if q < -1 {
                return Err(invalid(
                    "cpu.cfs_quota_us",
                    format!("quota {q} is invalid (-1 for unlimited)"),
                ));
            }
        }
        let wants = shares.is_some()
            || quota.is_some()
            || period.is_some()
            || cpu.burst().is_some()
            || rt_runtime.is_some()
            || rt_period.is_some()
            || cpu.idle().is_some();
        if !wants {
            return Ok(());
        }
        let c = Controller::Cpu;
        let v = self.need(c, "cpu.shares", "cpu")?;
        match v {
            Version::V1 => {
                if let Some(s) = shares {
                    self.write(c, v, "cpu.shares", s.to_string(), "cpu.shares");
                }
                if quota.is_some() || period.is_some() {
                    self.plan.ops.push(Op::CpuBandwidthV1 { quota, period });
                }
                if let Some(b) = cpu.burst() {
                    self.write(c, v, "cpu.cfs_burst_us", b.to_string(), "cpu.burst");
                }
                if let Some(p) = rt_period {
                    self.write(
                        c,
                        v,
                        "cpu.rt_period_us",
                        p.to_string(),
                        "cpu.realtimePeriod",
                    );
                }
                if let Some(r) = rt_runtime {
                    self.write(
                        c,
                        v,
                        "cpu.rt_runtime_us",
                        r.to_string(),
                        "cpu.realtimeRuntime",
                    );
                }
            }
            Version::V2 => {
                if rt_runtime.is_some() || rt_period.is_some() {
                    return Err(PlanError::NotSupported {
                        file: "cpu.rt_runtime_us".into(),
                        setting: "cpu.realtimeRuntime/realtimePeriod (no real-time group scheduling on cgroup v2)",
                    });
                }
                if let Some(s) = shares {
                    self.write(
                        c,
                        v,
                        "cpu.weight",
                        shares_to_weight(s).to_string(),
                        "cpu.shares",
                    );
                }
                if quota.is_some() || period.is_some() {
                    self.plan.ops.push(Op::CpuMaxV2 { quota, period });
                }
                if let Some(b) = cpu.burst() {
                    self.write(c, v, "cpu.max.burst", b.to_string(), "cpu.burst");
                }
            }
        }
        if let Some(i) = cpu.idle() {
            self.write(c, v, "cpu.idle", i.to_string(), "cpu.idle");
        }
        Ok(())
    }

    fn block_io(&mut self, b: &LinuxBlockIo) -> Result<(), PlanError> {
        let weight = b.weight().filter(|&w| w != 0);
        if b.leaf_weight().is_some() {
            self.ignore(
                "blockIO.leafWeight",
                "leaf weights went with the CFQ scheduler (Linux 5.0)",
            );
        }
        let wants = weight.is_some()
            || devs(b.weight_device())
            || devs(b.throttle_read_bps_device())
            || devs(b.throttle_write_bps_device())
            || devs(b.throttle_read_iops_device())
            || devs(b.throttle_write_iops_device());
        if !wants {
            return Ok(());
        }
        let c = Controller::Blkio;
        let v = self.need(c, "blkio.weight", "blockIO")?;
        let dev = |file: &str, major: i64, minor: i64| -> Result<String, PlanError> {
            if major < 0 || minor < 0 {
                return Err(invalid(file, format!("device {major}:{minor} is invalid")));
            }
            Ok(format!("{major}:{minor}"))
        };
        let mut weighted = |cands: Vec<(String, String)>, setting: &'static str| {
            self.plan.ops.push(Op::Write(Write {
                controller: Some(c),
                version: v,
                candidates: cands,
                setting,
                required: true,
            }));
        };
        if let Some(w) = weight {
            weighted(
                match v {
                    Version::V1 => vec![
                        ("blkio.weight".into(), w.to_string()),
                        ("blkio.bfq.weight".into(), w.to_string()),
                    ],
                    Version::V2 => vec![
                        ("io.bfq.weight".into(), w.to_string()),
                        ("io.weight".into(), blkio_weight_to_io_weight(w).to_string()),
                    ],
                },
                "blockIO.weight",
            );
        }
        let mut leaf_device = false;
        for d in b.weight_device().iter().flatten() {
            leaf_device |= d.leaf_weight().is_some();
            let Some(w) = d.weight().filter(|&w| w != 0) else {
                continue;
            };
            let id = dev("blkio.weight_device", d.major(), d.minor())?;
            weighted(
                match v {
                    Version::V1 => vec![
                        ("blkio.weight_device".into(), format!("{id} {w}")),
                        ("blkio.bfq.weight_device".into(), format!("{id} {w}")),
                    ],
                    Version::V2 => vec![
                        ("io.bfq.weight".into(), format!("{id} {w}")),
                        (
                            "io.weight".into(),
                            format!("{id} {}", blkio_weight_to_io_weight(w)),
                        ),
                    ],
                },
                "blockIO.weightDevice",
            );
        }
        if leaf_device {
            self.ignore(
                "blockIO.weightDevice[].leafWeight",
                "leaf weights went with the CFQ scheduler (Linux 5.0)",
            );
        }
        for (list, v1_file, v2_key, setting) in [
            (
                b.throttle_read_bps_device(),
                "blkio.throttle.read_bps_device",
                "rbps",
                "blockIO.throttleReadBpsDevice",
            ),
            (
                b.throttle_write_bps_device(),
                "blkio.throttle.write_bps_device",
                "wbps",
                "blockIO.throttleWriteBpsDevice",
            ),
            (
                b.throttle_read_iops_device(),
                "blkio.throttle.read_iops_device",
                "riops",
                "blockIO.throttleReadIOPSDevice",
            ),
            (
                b.throttle_write_iops_device(),
                "blkio.throttle.write_iops_device",
                "wiops",
                "blockIO.throttleWriteIOPSDevice",
            ),
        ] {
            for t in list.iter().flatten() {
                let id = dev(v1_file, t.major(), t.minor())?;
                match v {
                    Version::V1 => self.write(c, v, v1_file, format!("{id} {}", t.rate()), setting),
                    Version::V2 => {
                        // 0 removes the limit on v1; v2 spells that "max".
                        let rate = if t.rate() == 0 {
                            "max".to_string()
                        } else {
                            t.rate().to_string()
                        };
                        self.write(c, v, "io.max", format!("{id} {v2_key}={rate}"), setting)
                    }
                }
            }
        }
        Ok(())
    }

    fn hugetlb(
        &mut self,
        limits: &[oci_spec::runtime::LinuxHugepageLimit],
    ) -> Result<(), PlanError> {
        let c = Controller::Hugetlb;
        for l in limits {
            let size = l.page_size();
            let ok = size.len() > 2
                && (size.ends_with("KB") || size.ends_with("MB") || size.ends_with("GB"))
                && size[..size.len() - 2].bytes().all(|b| b.is_ascii_digit());
            let (limit_file, rsvd_file) = match (self.version)(c).unwrap_or(self.names) {
                Version::V1 => (
                    format!("hugetlb.{size}.limit_in_bytes"),
                    format!("hugetlb.{size}.rsvd.limit_in_bytes"),
                ),
                Version::V2 => (
                    format!("hugetlb.{size}.max"),
                    format!("hugetlb.{size}.rsvd.max"),
                ),
            };
            if !ok {
                return Err(invalid(
                    &limit_file,
                    format!("page size {size:?} is not like 2MB or 1GB"),
                ));
            }
            let v = self.need(c, &limit_file, "hugepageLimits")?;
            let value = match (l.limit() < 0, v) {
                (true, Version::V1) => "-1".to_string(),
                (true, Version::V2) => "max".to_string(),
                (false, _) => l.limit().to_string(),
            };
            self.write(c, v, &limit_file, value.clone(), "hugepageLimits");
            // The reservation limit (5.7+) follows the limit, where the kernel has it.
            self.plan.ops.push(Op::Write(Write {
                controller: Some(c),
                version: v,
                candidates: vec![(rsvd_file, value)],
                setting: "hugepageLimits",
                required: false,
            }));
        }
        Ok(())
    }

    fn network(&mut self, n: &oci_spec::runtime::LinuxNetwork) {
        if let Some(id) = n.class_id() {
            match (self.version)(Controller::NetCls) {
                Some(v) => self.write(
                    Controller::NetCls,
                    v,
                    "net_cls.classid",
                    id.to_string(),
                    "network.classID",
                ),
                None => self.ignore(
                    "network.classID",
                    "net_cls is not mounted (cgroup v2 has no net_cls)",
                ),
            }
        }
        if let Some(prios) = n.priorities().as_ref().filter(|p| !p.is_empty()) {
            match (self.version)(Controller::NetPrio) {
                Some(v) => {
                    for p in prios {
                        self.write(
                            Controller::NetPrio,
                            v,
                            "net_prio.ifpriomap",
                            format!("{} {}", p.name(), p.priority()),
                            "network.priorities",
                        );
                    }
                }
                None => self.ignore(
                    "network.priorities",
                    "net_prio is not mounted (cgroup v2 has no net_prio)",
                ),
            }
        }
    }

    fn rdma(
        &mut self,
        rdma: &std::collections::HashMap<String, oci_spec::runtime::LinuxRdma>,
    ) -> Result<(), PlanError> {
        let c = Controller::Rdma;
        let sorted: BTreeMap<_, _> = rdma.iter().collect();
        for (dev, l) in sorted {
            let mut value = dev.clone();
            if let Some(h) = l.hca_handles() {
                value.push_str(&format!(" hca_handle={h}"));
            }
            if let Some(o) = l.hca_objects() {
                value.push_str(&format!(" hca_object={o}"));
            }
            if value.len() == dev.len() {
                continue;
            }
            let v = self.need(c, "rdma.max", "rdma")?;
            self.write(c, v, "rdma.max", value, "rdma");
        }
        Ok(())
    }
}

/// The writes that apply `r`, given where each controller lives (`version`) and whether a
/// cgroup2 hierarchy exists at all (for the raw `unified` map). `names` is the version whose
/// file names an error about a missing controller uses (V2 on a pure v2 host).
pub fn plan(
    r: &LinuxResources,
    version: &dyn Fn(Controller) -> Option<Version>,
    has_unified: bool,
    names: Version,
) -> Result<Plan, PlanError> {
    let mut p = Planner {
        version,
        names,
        plan: Plan::default(),
    };
    if let Some(cpu) = r.cpu() {
        p.cpuset(cpu)?;
    }
    if let Some(m) = r.memory() {
        p.memory(m)?;
    }
    if let Some(cpu) = r.cpu() {
        p.cpu(cpu)?;
    }
    if let Some(pids) = r.pids() {
        let v = p.need(Controller::Pids, "pids.max", "pids.limit")?;
        let limit = pids.limit();
        let value = if limit > 0 {
            limit.to_string()
        } else {
            "max".into()
        };
        p.write(Controller::Pids, v, "pids.max", value, "pids.limit");
    }
    if let Some(b) = r.block_io() {
        p.block_io(b)?;
    }
    if let Some(h) = r.hugepage_limits() {
        p.hugetlb(h)?;
    }
    if let Some(n) = r.network() {
        p.network(n);
    }
    if let Some(rdma) = r.rdma() {
        p.rdma(rdma)?;
    }
    if let Some(list) = r.devices() {
        let rules = devices::from_oci(list).map_err(|e| invalid("devices", e))?;
        match p.need(Controller::Devices, "devices.allow", "devices")? {
            Version::V1 => {
                let writes = devices::v1_writes(&rules).map_err(|e| invalid("devices.allow", e))?;
                p.plan.ops.push(Op::DevicesV1(writes));
            }
            Version::V2 => p.plan.ops.push(Op::DevicesV2(rules)),
        }
    }
    if let Some(map) = r.unified().as_ref().filter(|m| !m.is_empty()) {
        let sorted: BTreeMap<_, _> = map.iter().collect();
        for (key, value) in sorted {
            if !has_unified {
                return Err(invalid(
                    key,
                    "linux.resources.unified needs cgroup v2, and this host has only cgroup v1",
                ));
            }
            if key.is_empty() || key.contains('/') || key.starts_with('.') || !key.contains('.') {
                return Err(invalid(
                    key,
                    "unified keys are cgroup v2 file names like memory.high",
                ));
            }
            p.plan.ops.push(Op::Write(Write {
                controller: None,
                version: Version::V2,
                candidates: vec![(key.clone(), value.clone())],
                setting: "linux.resources.unified",
                required: true,
            }));
        }
    }
    Ok(p.plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::*;
    use std::collections::HashMap;

    fn v1(c: Controller) -> Option<Version> {
        (!matches!(
            c,
            Controller::NetCls | Controller::NetPrio | Controller::Rdma | Controller::Hugetlb
        ))
        .then_some(Version::V1)
    }
    fn v2(c: Controller) -> Option<Version> {
        (!matches!(c, Controller::NetCls | Controller::NetPrio)).then_some(Version::V2)
    }

    fn files(p: &Plan) -> Vec<(String, String)> {
        p.ops
            .iter()
            .filter_map(|o| match o {
                Op::Write(w) => Some(w.candidates[0].clone()),
                _ => None,
            })
            .collect()
    }

    fn pair(a: &str, b: &str) -> (String, String) {
        (a.to_string(), b.to_string())
    }

    #[test]
    fn conversions() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(
            shares_to_weight(1),
            1,
            "below the v1 minimum: clamped, no underflow"
        );
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(swap_v2(Some(100), Some(300)), Ok(Some("200".into())));
        assert_eq!(swap_v2(Some(100), Some(100)), Ok(Some("0".into())));
        assert_eq!(swap_v2(Some(100), Some(-1)), Ok(Some("max".into())));
        assert_eq!(swap_v2(Some(-1), None), Ok(Some("max".into())));
        assert_eq!(swap_v2(Some(100), None), Ok(None));
        assert_eq!(swap_v2(None, Some(0)), Ok(None));
        assert!(swap_v2(Some(300), Some(100)).is_err());
        assert!(swap_v2(None, Some(100)).is_err());
        assert!(swap_v2(Some(-1), Some(100)).is_err());
    }

    fn memory(limit: i64, swap: Option<i64>) -> LinuxResources {
        let mut m = LinuxMemoryBuilder::default()
            .limit(limit)
            .reservation(1 << 20)
            .kernel(1)
            .swappiness(10u64)
            .disable_oom_killer(true);
        if let Some(s) = swap {
            m = m.swap(s);
        }
        LinuxResourcesBuilder::default()
            .memory(m.build().unwrap())
            .build()
            .unwrap()
    }

    #[test]
    fn memory_v1() {
        let p = plan(&memory(64 << 20, Some(128 << 20)), &v1, true, Version::V1).unwrap();
        assert_eq!(
            p.ops[0],
            Op::MemoryV1 {
                limit: Some((64 << 20).to_string()),
                memsw: Some((128 << 20).to_string()),
                memsw_required: true
            }
        );
        assert_eq!(
            files(&p),
            [
                pair("memory.soft_limit_in_bytes", "1048576"),
                pair("memory.swappiness", "10"),
                pair("memory.oom_control", "1")
            ]
        );
        assert_eq!(p.ignored.len(), 1);
        assert_eq!(p.ignored[0].setting, "memory.kernel");
        // Unlimited memory implies unlimited memsw, but only if the kernel accounts swap.
        let p = plan(&memory(-1, None), &v1, true, Version::V1).unwrap();
        assert_eq!(
            p.ops[0],
            Op::MemoryV1 {
                limit: Some("-1".into()),
                memsw: Some("-1".into()),
                memsw_required: false
            }
        );
        assert!(plan(&memory(128, Some(64)), &v1, true, Version::V1).is_err());
    }

    #[test]
    fn memory_v2() {
        let p = plan(&memory(64 << 20, Some(128 << 20)), &v2, true, Version::V2).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("memory.max", "67108864"),
                pair("memory.swap.max", "67108864"),
                pair("memory.low", "1048576")
            ]
        );
        let ignored: Vec<_> = p.ignored.iter().map(|i| i.setting).collect();
        assert_eq!(
            ignored,
            [
                "memory.kernel",
                "memory.swappiness",
                "memory.disableOOMKiller"
            ]
        );
        let p = plan(&memory(-1, None), &v2, true, Version::V2).unwrap();
        assert_eq!(
            files(&p)[..2],
            [pair("memory.max", "max"), pair("memory.swap.max", "max")]
        );
    }

    #[test]
    fn zero_means_unset() {
        let m = LinuxMemoryBuilder::default()
            .limit(0)
            .swap(0)
            .build()
            .unwrap();
        let cpu = LinuxCpuBuilder::default()
            .shares(0u64)
            .quota(0)
            .period(0u64)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(m)
            .cpu(cpu)
            .build()
            .unwrap();
        assert_eq!(plan(&r, &v2, true, Version::V2).unwrap(), Plan::default());
    }

    #[test]
    fn cpu_both_versions() {
        let cpu = LinuxCpuBuilder::default()
            .shares(1024u64)
            .quota(50_000)
            .period(100_000u64)
            .cpus("0-1")
            .mems("0")
            .idle(0)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        let p = plan(&r, &v1, false, Version::V1).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("cpuset.cpus", "0-1"),
                pair("cpuset.mems", "0"),
                pair("cpu.shares", "1024"),
                pair("cpu.idle", "0")
            ]
        );
        assert!(p.ops.contains(&Op::CpuBandwidthV1 {
            quota: Some(50_000),
            period: Some(100_000)
        }));
        let p = plan(&r, &v2, true, Version::V2).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("cpuset.cpus", "0-1"),
                pair("cpuset.mems", "0"),
                pair("cpu.weight", "39"),
                pair("cpu.idle", "0")
            ]
        );
        assert!(p.ops.contains(&Op::CpuMaxV2 {
            quota: Some(50_000),
            period: Some(100_000)
        }));
        // Real-time: v1 only.
        let rt = LinuxCpuBuilder::default()
            .realtime_runtime(950_000)
            .realtime_period(1_000_000u64)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().cpu(rt).build().unwrap();
        assert_eq!(
            files(&plan(&r, &v1, false, Version::V1).unwrap()),
            [
                pair("cpu.rt_period_us", "1000000"),
                pair("cpu.rt_runtime_us", "950000")
            ]
        );
        assert!(matches!(
            plan(&r, &v2, true, Version::V2),
            Err(PlanError::NotSupported { .. })
        ));
    }

    #[test]
    fn pids_limits() {
        for (limit, want) in [(5, "5"), (0, "max"), (-1, "max")] {
            let r = LinuxResourcesBuilder::default()
                .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
                .build()
                .unwrap();
            assert_eq!(
                files(&plan(&r, &v1, false, Version::V1).unwrap()),
                [pair("pids.max", want)]
            );
        }
    }

    #[test]
    fn block_io() {
        let td = |rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(254)
                .minor(0)
                .rate(rate)
                .build()
                .unwrap()
        };
        let b = LinuxBlockIoBuilder::default()
            .weight(500u16)
            .weight_device(vec![LinuxWeightDeviceBuilder::default()
                .major(254)
                .minor(0)
                .weight(100u16)
                .build()
                .unwrap()])
            .throttle_read_bps_device(vec![td(1 << 20)])
            .throttle_write_iops_device(vec![td(0)])
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default()
            .block_io(b)
            .build()
            .unwrap();
        let p = plan(&r, &v1, false, Version::V1).unwrap();
        let Op::Write(w) = &p.ops[0] else { panic!() };
        assert_eq!(
            w.candidates,
            [pair("blkio.weight", "500"), pair("blkio.bfq.weight", "500")]
        );
        assert_eq!(
            files(&p)[1..],
            [
                pair("blkio.weight_device", "254:0 100"),
                pair("blkio.throttle.read_bps_device", "254:0 1048576"),
                pair("blkio.throttle.write_iops_device", "254:0 0")
            ]
        );
        let p = plan(&r, &v2, true, Version::V2).unwrap();
        let Op::Write(w) = &p.ops[0] else { panic!() };
        assert_eq!(
            w.candidates,
            [pair("io.bfq.weight", "500"), pair("io.weight", "4950")]
        );
        let Op::Write(w) = &p.ops[1] else { panic!() };
        assert_eq!(
            w.candidates,
            [
                pair("io.bfq.weight", "254:0 100"),
                pair("io.weight", "254:0 910")
            ]
        );
        assert_eq!(
            files(&p)[2..],
            [
                pair("io.max", "254:0 rbps=1048576"),
                pair("io.max", "254:0 wiops=max")
            ]
        );
    }

    #[test]
    fn hugetlb_network_rdma_unified() {
        let h = LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4 << 21)
            .build()
            .unwrap();
        let n = LinuxNetworkBuilder::default()
            .class_id(0x10001u32)
            .build()
            .unwrap();
        let mut unified = HashMap::new();
        unified.insert("memory.high".to_string(), "1G".to_string());
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![h])
            .network(n)
            .unified(unified)
            .build()
            .unwrap();
        // v1 here: hugetlb has no v1 mount → not supported.
        assert!(
            matches!(plan(&r, &v1, true, Version::V1), Err(PlanError::NotSupported { file, .. }) if file == "hugetlb.2MB.limit_in_bytes")
        );
        let p = plan(&r, &v2, true, Version::V2).unwrap();
        assert_eq!(
            files(&p),
            [
                pair("hugetlb.2MB.max", "8388608"),
                pair("hugetlb.2MB.rsvd.max", "8388608"),
                pair("memory.high", "1G")
            ]
        );
        assert_eq!(p.ignored[0].setting, "network.classID");
        // unified on a v1-only host is an error.
        let only_unified = LinuxResourcesBuilder::default()
            .unified(r.unified().clone().unwrap())
            .build()
            .unwrap();
        assert!(matches!(
            plan(&only_unified, &v1, false, Version::V1),
            Err(PlanError::Invalid { .. })
        ));
        let bad = LinuxHugepageLimitBuilder::default()
            .page_size("2M")
            .limit(1)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![bad])
            .build()
            .unwrap();
        assert!(matches!(
            plan(&r, &v2, true, Version::V2),
            Err(PlanError::Invalid { .. })
        ));
        let mut rdma = HashMap::new();
        rdma.insert(
            "mlx5_0".to_string(),
            LinuxRdmaBuilder::default()
                .hca_handles(2u32)
                .build()
                .unwrap(),
        );
        let r = LinuxResourcesBuilder::default().rdma(rdma).build().unwrap();
        assert_eq!(
            files(&plan(&r, &v2, true, Version::V2).unwrap()),
            [pair("rdma.max", "mlx5_0 hca_handle=2")]
        );
    }

    #[test]
    fn devices_per_version() {
        let rules = vec![
            LinuxDeviceCgroupBuilder::default()
                .allow(false)
                .access("rwm")
                .build()
                .unwrap(),
            LinuxDeviceCgroupBuilder::default()
                .allow(true)
                .typ(LinuxDeviceType::C)
                .major(1)
                .minor(3)
                .access("rw")
                .build()
                .unwrap(),
        ];
        let r = LinuxResourcesBuilder::default()
            .devices(rules)
            .build()
            .unwrap();
        let p = plan(&r, &v1, false, Version::V1).unwrap();
        assert_eq!(
            p.ops,
            [Op::DevicesV1(vec![
                ("devices.deny", "a".into()),
                ("devices.allow", "c 1:3 rw".into())
            ])]
        );
        let p = plan(&r, &v2, true, Version::V2).unwrap();
        assert!(matches!(&p.ops[0], Op::DevicesV2(r) if r.len() == 2));
    }
}
