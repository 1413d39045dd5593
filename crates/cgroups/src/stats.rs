//! Resource usage of a cgroup, shaped like runc's `events --stats` types (`cpu`, `memory`,
//! `pids`, `blkio`, `hugetlb`), plus the pure parsers of the kernel's stat files.
//!
//! Units follow runc: CPU times in nanoseconds, memory in bytes. A v2 `max` limit reads as
//! `u64::MAX` for memory (as runc reports it) and as 0 for pids.

use std::collections::BTreeMap;

/// Everything [`Manager::stats`](crate::Manager::stats) collects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub cpu: CpuStats,
    pub memory: MemoryStats,
    pub pids: PidsStats,
    pub blkio: BlkioStats,
    /// Per huge page size (`2MB`, `1GB`).
    pub hugetlb: BTreeMap<String, HugetlbStats>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// CPU time used, in nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuUsage {
    pub total: u64,
    /// Per CPU (v1 `cpuacct.usage_percpu`; empty on v2).
    pub percpu: Vec<u64>,
    pub kernel: u64,
    pub user: u64,
}

/// CFS bandwidth throttling.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Throttling {
    pub periods: u64,
    pub throttled_periods: u64,
    /// Nanoseconds.
    pub throttled_time: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Page cache (v1 `cache`, v2 `file`).
    pub cache: u64,
    pub usage: MemoryEntry,
    /// Memory+swap, as v1 `memsw` counts it (v2: memory.current + memory.swap.current).
    pub swap: MemoryEntry,
    /// v1 only.
    pub kernel: MemoryEntry,
    /// v1 only.
    pub kernel_tcp: MemoryEntry,
    /// `memory.stat` as it is (v1: `rss`, `cache`, `total_*` …; v2: `anon`, `file` …).
    pub raw: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryEntry {
    pub limit: u64,
    pub usage: u64,
    /// Peak usage (v1 `max_usage_in_bytes`, v2 `memory.peak` where the kernel has it).
    pub max: u64,
    /// Times the limit was hit (v2: the `max` count of `memory.events`).
    pub failcnt: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PidsStats {
    pub current: u64,
    /// 0 when unlimited.
    pub limit: u64,
}

/// Block I/O, per device and operation, as runc reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlkioStats {
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlkioEntry {
    pub major: u64,
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard`, `Total`.
    pub op: String,
    pub value: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HugetlbStats {
    pub usage: u64,
    pub max: u64,
    pub failcnt: u64,
}

/// `key value` lines (memory.stat, cpu.stat, cpuacct.stat, memory.events …); lines that
/// do not parse are skipped.
pub fn parse_flat_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = it.next()?.parse().ok()?;
            Some((k.to_string(), v))
        })
        .collect()
}

/// v1 `blkio.*_recursive` files: `MAJ:MIN Op value` lines (and a final `Total value`, dropped).
pub fn parse_blkio_v1(text: &str) -> Vec<BlkioEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 3 {
                return None;
            }
            let (ma, mi) = f[0].split_once(':')?;
            Some(BlkioEntry {
                major: ma.parse().ok()?,
                minor: mi.parse().ok()?,
                op: f[1].to_string(),
                value: f[2].parse().ok()?,
            })
        })
        .collect()
}

/// v2 `io.stat`: `MAJ:MIN rbytes=… wbytes=… rios=… wios=… dbytes=… dios=…` lines, as
/// (bytes, operations) entries with runc's op names.
pub fn parse_io_stat(text: &str) -> BlkioStats {
    let mut s = BlkioStats::default();
    for l in text.lines() {
        let mut it = l.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse(), mi.parse()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse() else { continue };
            let (list, op) = match k {
                "rbytes" => (&mut s.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.io_service_bytes_recursive, "Write"),
                "dbytes" => (&mut s.io_service_bytes_recursive, "Discard"),
                "rios" => (&mut s.io_serviced_recursive, "Read"),
                "wios" => (&mut s.io_serviced_recursive, "Write"),
                "dios" => (&mut s.io_serviced_recursive, "Discard"),
                _ => continue,
            };
            list.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
    s
}

/// The name cgroup files use for a huge page size given in kB (`hugepages-2048kB` → `2MB`).
pub fn hugepage_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb.trailing_zeros() >= 20 {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb.trailing_zeros() >= 10 {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// The huge page sizes this kernel supports, as cgroup file names use them.
pub fn hugepage_sizes() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir("/sys/kernel/mm/hugepages") else {
        return Vec::new();
    };
    let mut sizes: Vec<(u64, String)> = dir
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kb = name
                .strip_prefix("hugepages-")?
                .strip_suffix("kB")?
                .parse()
                .ok()?;
            Some((kb, hugepage_size_name(kb)))
        })
        .collect();
    sizes.sort();
    sizes.into_iter().map(|(_, n)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed() {
        let m = parse_flat_keyed("usage_usec 1500\nuser_usec 1000\nbogus\nsystem_usec x\n");
        assert_eq!(m.len(), 2);
        assert_eq!(m["usage_usec"], 1500);
    }

    #[test]
    fn blkio_v1() {
        let e = parse_blkio_v1("254:0 Read 4096\n254:0 Write 0\n254:0 Total 4096\nTotal 4096\n");
        assert_eq!(e.len(), 3);
        assert_eq!(
            e[0],
            BlkioEntry {
                major: 254,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
    }

    #[test]
    fn io_stat() {
        let s = parse_io_stat("254:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n");
        assert_eq!(s.io_service_bytes_recursive.len(), 3);
        assert_eq!(s.io_service_bytes_recursive[1].value, 8192);
        assert_eq!(s.io_serviced_recursive[1].op, "Write");
    }

    #[test]
    fn page_sizes() {
        assert_eq!(hugepage_size_name(2048), "2MB");
        assert_eq!(hugepage_size_name(1_048_576), "1GB");
        assert_eq!(hugepage_size_name(64), "64KB");
    }
}
