//! Where the cgroup hierarchies are: the mode (v1, hybrid, v2), the v1 mounts with their
//! controllers, the cgroup2 mount and the controllers it offers, and this process's own cgroups.
//!
//! [`parse_mountinfo`], [`parse_proc_cgroup`] and [`Hierarchies::from_parts`] are pure;
//! [`Hierarchies::detect`] and [`Hierarchies::unified_at`] read the live files.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How the cgroup hierarchies are laid out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Only cgroup v1 hierarchies.
    Legacy,
    /// cgroup v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`) that holds
    /// whatever controller no v1 hierarchy took.
    Hybrid,
    /// Only cgroup2 (v1 hierarchies without controllers, like `name=systemd`, may remain).
    Unified,
}

/// A resource controller, by its v1 name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Controller {
    Cpu,
    Cpuacct,
    Cpuset,
    Memory,
    Devices,
    Freezer,
    Blkio,
    Pids,
    Hugetlb,
    NetCls,
    NetPrio,
    Rdma,
    Misc,
}

impl Controller {
    /// Every controller.
    pub const ALL: [Controller; 13] = [
        Controller::Cpu,
        Controller::Cpuacct,
        Controller::Cpuset,
        Controller::Memory,
        Controller::Devices,
        Controller::Freezer,
        Controller::Blkio,
        Controller::Pids,
        Controller::Hugetlb,
        Controller::NetCls,
        Controller::NetPrio,
        Controller::Rdma,
        Controller::Misc,
    ];

    /// The name of the controller in a cgroup v1 mount's options.
    pub fn v1_name(self) -> &'static str {
        match self {
            Controller::Cpu => "cpu",
            Controller::Cpuacct => "cpuacct",
            Controller::Cpuset => "cpuset",
            Controller::Memory => "memory",
            Controller::Devices => "devices",
            Controller::Freezer => "freezer",
            Controller::Blkio => "blkio",
            Controller::Pids => "pids",
            Controller::Hugetlb => "hugetlb",
            Controller::NetCls => "net_cls",
            Controller::NetPrio => "net_prio",
            Controller::Rdma => "rdma",
            Controller::Misc => "misc",
        }
    }

    /// The name in a v2 `cgroup.controllers` file, or `None` when v2 has no such controller:
    /// devices (an eBPF program), freezer (`cgroup.freeze`) and cpu accounting (`cpu.stat`)
    /// are part of every v2 cgroup; net_cls/net_prio do not exist on v2.
    pub fn v2_name(self) -> Option<&'static str> {
        match self {
            Controller::Cpu => Some("cpu"),
            Controller::Cpuset => Some("cpuset"),
            Controller::Memory => Some("memory"),
            Controller::Blkio => Some("io"),
            Controller::Pids => Some("pids"),
            Controller::Hugetlb => Some("hugetlb"),
            Controller::Rdma => Some("rdma"),
            Controller::Misc => Some("misc"),
            Controller::Cpuacct
            | Controller::Devices
            | Controller::Freezer
            | Controller::NetCls
            | Controller::NetPrio => None,
        }
    }

    /// The controller with this v1 name.
    pub fn from_v1_name(name: &str) -> Option<Controller> {
        Controller::ALL.into_iter().find(|c| c.v1_name() == name)
    }
}

/// The filesystem type of a cgroup mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FsType {
    /// `cgroup` (v1).
    V1,
    /// `cgroup2`.
    V2,
}

/// One cgroup mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupMount {
    pub fs: FsType,
    /// Where it is mounted.
    pub mountpoint: PathBuf,
    /// Which cgroup of the hierarchy appears at the mountpoint (`/` unless bind-mounted or
    /// seen from a cgroup namespace).
    pub root: PathBuf,
    /// v1: the controllers (`cpu`, `cpuacct`, …) and `name=…` of the hierarchy; v2: empty.
    pub controllers: Vec<String>,
}

/// A v1 hierarchy in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V1Hierarchy {
    pub mountpoint: PathBuf,
    pub root: PathBuf,
    /// Controller names and `name=…`, as in the mount options.
    pub controllers: Vec<String>,
    /// This process's cgroup in this hierarchy, from `/proc/self/cgroup`.
    pub own: Option<PathBuf>,
}

impl V1Hierarchy {
    /// Whether this hierarchy carries `c`.
    pub fn has(&self, c: Controller) -> bool {
        self.controllers.iter().any(|n| n == c.v1_name())
    }
}

/// The cgroup2 hierarchy in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnifiedHierarchy {
    pub mountpoint: PathBuf,
    pub root: PathBuf,
    /// The root's `cgroup.controllers`: the controllers bound to v2.
    pub controllers: Vec<String>,
    /// This process's v2 cgroup (`0::…` in `/proc/self/cgroup`).
    pub own: Option<PathBuf>,
}

/// Where a controller's files live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    /// In the v1 hierarchy with this index in [`Hierarchies::v1`].
    V1(usize),
    /// In the cgroup2 hierarchy.
    Unified,
}

/// The cgroup hierarchies of this machine (or the one a test or caller describes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hierarchies {
    pub mode: Mode,
    /// v1 hierarchies, controller-less named ones (`name=systemd`) included.
    pub v1: Vec<V1Hierarchy>,
    pub unified: Option<UnifiedHierarchy>,
}

const MOUNTINFO: &str = "/proc/self/mountinfo";
const PROC_CGROUP: &str = "/proc/self/cgroup";

/// v1 controller names the kernel knows (anything else in the options is a mount flag).
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
    "debug",
];

/// Undoes the octal escapes (`\040` for a space …) of mountinfo fields.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') as u32 * 64
                + (b[i + 2] - b'0') as u32 * 8
                + (b[i + 3] - b'0') as u32;
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The cgroup mounts in `/proc/self/mountinfo` text, in order. Lines that are not cgroup
/// mounts are skipped; a cgroup line that is malformed is an error (its line number).
pub fn parse_mountinfo(text: &str) -> std::result::Result<Vec<CgroupMount>, usize> {
    let mut mounts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // id parent maj:min root mountpoint options [optional…] - fstype source superoptions
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let fs = match r.next() {
            Some("cgroup") => FsType::V1,
            Some("cgroup2") => FsType::V2,
            _ => continue,
        };
        let _source = r.next();
        let superopts = r.next().unwrap_or("");
        let l: Vec<&str> = left.split_whitespace().collect();
        if l.len() < 6 {
            return Err(n + 1);
        }
        let controllers = match fs {
            FsType::V2 => Vec::new(),
            FsType::V1 => superopts
                .split(',')
                .filter(|o| V1_CONTROLLERS.contains(o) || o.starts_with("name="))
                .map(str::to_string)
                .collect(),
        };
        mounts.push(CgroupMount {
            fs,
            root: PathBuf::from(unescape(l[3])),
            mountpoint: PathBuf::from(unescape(l[4])),
            controllers,
        });
    }
    Ok(mounts)
}

/// One line of `/proc/<pid>/cgroup`: `hierarchy-id:controllers:path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcCgroup {
    pub id: u32,
    /// Controllers (and `name=…`) of the hierarchy; empty for cgroup2.
    pub controllers: Vec<String>,
    pub path: PathBuf,
}

/// Parses `/proc/<pid>/cgroup` text; malformed lines are skipped.
pub fn parse_proc_cgroup(text: &str) -> Vec<ProcCgroup> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let id = parts.next()?.parse().ok()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(ProcCgroup {
                id,
                controllers: controllers
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: PathBuf::from(path),
            })
        })
        .collect()
}

fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().collect::<BTreeSet<_>>() == b.iter().collect::<BTreeSet<_>>()
}

/// Prefer the conventional place when a hierarchy is mounted more than once.
fn preferred(new: &Path, old: &Path) -> bool {
    new.starts_with("/sys/fs/cgroup") && !old.starts_with("/sys/fs/cgroup")
}

impl Hierarchies {
    /// Builds the picture from the text of `/proc/self/mountinfo`, `/proc/self/cgroup` and the
    /// cgroup2 root's `cgroup.controllers` (`None` if there is no cgroup2 mount or it could not
    /// be read).
    pub fn from_parts(
        mountinfo: &str,
        proc_cgroup: &str,
        unified_controllers: Option<&str>,
    ) -> Result<Hierarchies> {
        let mounts = parse_mountinfo(mountinfo).map_err(|line| Error::NoCgroups {
            path: PathBuf::from(MOUNTINFO),
            reason: format!("line {line}: malformed cgroup mount"),
        })?;
        let own = parse_proc_cgroup(proc_cgroup);
        let mut v1: Vec<V1Hierarchy> = Vec::new();
        let mut unified: Option<UnifiedHierarchy> = None;
        for m in mounts {
            match m.fs {
                FsType::V1 => {
                    if m.controllers.is_empty() {
                        continue;
                    }
                    let mine = own
                        .iter()
                        .find(|p| p.id != 0 && same_set(&p.controllers, &m.controllers))
                        .map(|p| p.path.clone());
                    let h = V1Hierarchy {
                        mountpoint: m.mountpoint,
                        root: m.root,
                        controllers: m.controllers,
                        own: mine,
                    };
                    match v1
                        .iter_mut()
                        .find(|o| same_set(&o.controllers, &h.controllers))
                    {
                        Some(old) => {
                            if preferred(&h.mountpoint, &old.mountpoint) {
                                *old = h;
                            }
                        }
                        None => v1.push(h),
                    }
                }
                FsType::V2 => {
                    let replace = match &unified {
                        None => true,
                        Some(old) => preferred(&m.mountpoint, &old.mountpoint),
                    };
                    if replace {
                        unified = Some(UnifiedHierarchy {
                            mountpoint: m.mountpoint,
                            root: m.root,
                            controllers: Vec::new(),
                            own: own
                                .iter()
                                .find(|p| p.id == 0 && p.controllers.is_empty())
                                .map(|p| p.path.clone()),
                        });
                    }
                }
            }
        }
        if let (Some(u), Some(text)) = (unified.as_mut(), unified_controllers) {
            u.controllers = text.split_whitespace().map(str::to_string).collect();
        }
        let v1_controllers = v1
            .iter()
            .any(|h| h.controllers.iter().any(|c| !c.starts_with("name=")));
        let mode = match (v1_controllers, unified.is_some()) {
            (true, true) => Mode::Hybrid,
            (true, false) => Mode::Legacy,
            (false, true) => Mode::Unified,
            (false, false) => {
                return Err(Error::NoCgroups {
                    path: PathBuf::from(MOUNTINFO),
                    reason: "no cgroup or cgroup2 filesystem is mounted".into(),
                })
            }
        };
        Ok(Hierarchies { mode, v1, unified })
    }

    /// The hierarchies of this machine, as this process sees them.
    pub fn detect() -> Result<Hierarchies> {
        let mountinfo =
            std::fs::read_to_string(MOUNTINFO).map_err(|e| Error::io(MOUNTINFO, "", e))?;
        let proc_cgroup = std::fs::read_to_string(PROC_CGROUP).unwrap_or_default();
        let mounts = parse_mountinfo(&mountinfo).unwrap_or_default();
        // Read cgroup.controllers of the cgroup2 mount `from_parts` will pick.
        let mut v2: Option<&PathBuf> = None;
        for m in mounts.iter().filter(|m| m.fs == FsType::V2) {
            if v2.is_none_or(|old| preferred(&m.mountpoint, old)) {
                v2 = Some(&m.mountpoint);
            }
        }
        let controllers =
            v2.and_then(|p| std::fs::read_to_string(p.join("cgroup.controllers")).ok());
        Hierarchies::from_parts(&mountinfo, &proc_cgroup, controllers.as_deref())
    }

    /// A pure cgroup v2 view rooted at `mountpoint` (a cgroup2 mount), ignoring any v1
    /// hierarchy: what a v2-only host looks like, and a way to run against the cgroup2 half
    /// of a hybrid host.
    pub fn unified_at(mountpoint: &Path) -> Result<Hierarchies> {
        let text = crate::fs::read(mountpoint, "cgroup.controllers")?;
        let proc_cgroup = std::fs::read_to_string(PROC_CGROUP).unwrap_or_default();
        let own = parse_proc_cgroup(&proc_cgroup)
            .into_iter()
            .find(|p| p.id == 0 && p.controllers.is_empty())
            .map(|p| p.path);
        Ok(Hierarchies {
            mode: Mode::Unified,
            v1: Vec::new(),
            unified: Some(UnifiedHierarchy {
                mountpoint: mountpoint.to_path_buf(),
                root: PathBuf::from("/"),
                controllers: text.split_whitespace().map(str::to_string).collect(),
                own,
            }),
        })
    }

    /// Where `c` lives: its v1 hierarchy if one carries it, else cgroup2 if that offers it
    /// (devices, freezer and cpu accounting are always there), else nowhere.
    pub fn location(&self, c: Controller) -> Option<Location> {
        if let Some(i) = self.v1.iter().position(|h| h.has(c)) {
            return Some(Location::V1(i));
        }
        let u = self.unified.as_ref()?;
        match c {
            Controller::Devices | Controller::Freezer | Controller::Cpuacct => {
                Some(Location::Unified)
            }
            Controller::NetCls | Controller::NetPrio => None,
            _ => {
                let name = c.v2_name()?;
                u.controllers
                    .iter()
                    .any(|n| n == name)
                    .then_some(Location::Unified)
            }
        }
    }

    /// The cgroup version a controller is used with, `None` if unavailable.
    pub fn version(&self, c: Controller) -> Option<crate::resources::Version> {
        self.location(c).map(|l| match l {
            Location::V1(_) => crate::resources::Version::V1,
            Location::Unified => crate::resources::Version::V2,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine: v1 controllers, one per hierarchy, plus cgroup2 at …/unified.
    pub(crate) const HYBRID: &str = "\
22 1 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/devices rw,relatime - cgroup cgroup rw,devices
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
38 31 0:35 / /sys/fs/cgroup/blkio rw,relatime - cgroup cgroup rw,blkio
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A systemd-era v1 host (co-mounted cpu,cpuacct), no cgroup2.
    const LEGACY: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
29 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid,nodev,noexec,relatime shared:13 - cgroup cgroup rw,cpu,cpuacct
30 25 0:27 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup cgroup rw,memory
31 25 0:28 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid,nodev,noexec,relatime shared:15 - cgroup cgroup rw,net_cls,net_prio
";

    /// A pure v2 host, plus a container's bind mount of the same hierarchy elsewhere.
    const UNIFIED: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
99 98 0:26 /system.slice/x.scope /run/ctr\\040root/sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn hybrid_host() {
        let proc = "9:name=systemd:/\n4:memory:/process_api/abc\n1:cpu:/\n0::/\n";
        let h = Hierarchies::from_parts(HYBRID, proc, Some("hugetlb\n")).unwrap();
        assert_eq!(h.mode, Mode::Hybrid);
        assert_eq!(h.v1.len(), 9);
        let u = h.unified.as_ref().unwrap();
        assert_eq!(u.mountpoint, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(u.controllers, ["hugetlb"]);
        assert_eq!(u.own.as_deref(), Some(Path::new("/")));
        let mem = &h.v1[h.v1.iter().position(|m| m.has(Controller::Memory)).unwrap()];
        assert_eq!(mem.own.as_deref(), Some(Path::new("/process_api/abc")));
        // v1 where mounted, cgroup2 for hugetlb, nowhere for net_cls.
        assert!(matches!(
            h.location(Controller::Memory),
            Some(Location::V1(_))
        ));
        assert_eq!(h.location(Controller::Hugetlb), Some(Location::Unified));
        assert_eq!(h.location(Controller::NetCls), None);
        assert_eq!(h.location(Controller::Rdma), None);
        assert!(matches!(
            h.location(Controller::Devices),
            Some(Location::V1(_))
        ));
    }

    #[test]
    fn legacy_host() {
        let h = Hierarchies::from_parts(LEGACY, "", None).unwrap();
        assert_eq!(h.mode, Mode::Legacy);
        assert!(h.unified.is_none());
        let cpu = h.location(Controller::Cpu).unwrap();
        assert_eq!(cpu, h.location(Controller::Cpuacct).unwrap());
        assert_eq!(h.v1[0].controllers, ["name=systemd"]);
        assert_eq!(h.location(Controller::Devices), None);
        assert!(h.location(Controller::NetPrio).is_some());
    }

    #[test]
    fn unified_host() {
        let h = Hierarchies::from_parts(
            UNIFIED,
            "0::/user.slice\n",
            Some("cpuset cpu io memory pids"),
        )
        .unwrap();
        assert_eq!(h.mode, Mode::Unified);
        let u = h.unified.as_ref().unwrap();
        assert_eq!(u.mountpoint, Path::new("/sys/fs/cgroup"));
        assert_eq!(u.own.as_deref(), Some(Path::new("/user.slice")));
        assert_eq!(h.location(Controller::Blkio), Some(Location::Unified));
        assert_eq!(h.location(Controller::Devices), Some(Location::Unified));
        assert_eq!(h.location(Controller::Hugetlb), None);
        assert_eq!(h.location(Controller::NetCls), None);
    }

    #[test]
    fn named_only_v1_is_still_unified() {
        let text = format!(
            "{UNIFIED}40 31 0:37 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,name=systemd\n"
        );
        assert_eq!(
            Hierarchies::from_parts(&text, "", Some("")).unwrap().mode,
            Mode::Unified
        );
    }

    #[test]
    fn escapes_and_roots() {
        let m = parse_mountinfo(UNIFIED).unwrap();
        assert_eq!(m[1].mountpoint, Path::new("/run/ctr root/sys/fs/cgroup"));
        assert_eq!(m[1].root, Path::new("/system.slice/x.scope"));
    }

    #[test]
    fn no_cgroups_is_an_error() {
        assert!(matches!(
            Hierarchies::from_parts("1 0 0:1 / / rw - ext4 /dev/vda rw\n", "", None),
            Err(Error::NoCgroups { .. })
        ));
        assert_eq!(parse_mountinfo("1 0 - cgroup cgroup rw,cpu\n"), Err(1));
    }

    #[test]
    fn proc_cgroup_lines() {
        let p = parse_proc_cgroup("3:cpu,cpuacct:/a/b\n0::/c\ngarbage\n");
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(p[1].id, 0);
        assert!(p[1].controllers.is_empty());
    }
}
