//! Capability names (as the OCI spec writes them) to kernel numbers, and applying the
//! five sets.

use std::collections::HashSet;

use oci_spec::runtime::{Capability, LinuxCapabilities};
use rustix::thread::{CapabilitySet, CapabilitySets};

use crate::error::{Result, RuntimeError};

/// The kernel's capability numbers, by `CAP_` name.
const NAMES: &[(&str, u32)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// The number of a capability name (`CAP_CHOWN` or `chown`, any case).
pub fn number(name: &str) -> Option<u32> {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    NAMES.iter().find(|(n, _)| *n == full).map(|(_, v)| *v)
}

fn name_of(c: &Capability) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The highest capability this kernel knows (`/proc/sys/kernel/cap_last_cap`).
pub fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

fn mask(set: &Option<HashSet<Capability>>) -> u64 {
    let last = last_cap();
    set.iter()
        .flatten()
        .filter_map(|c| number(&name_of(c)))
        .filter(|n| *n <= last)
        .fold(0u64, |m, n| m | (1u64 << n))
}

/// The sets, as bit masks: (bounding, effective, permitted, inheritable, ambient).
pub struct Masks {
    pub bounding: u64,
    pub effective: u64,
    pub permitted: u64,
    pub inheritable: u64,
    pub ambient: u64,
}

pub fn masks(caps: &Option<LinuxCapabilities>) -> Masks {
    match caps {
        None => Masks {
            bounding: 0,
            effective: 0,
            permitted: 0,
            inheritable: 0,
            ambient: 0,
        },
        Some(c) => Masks {
            bounding: mask(c.bounding()),
            effective: mask(c.effective()),
            permitted: mask(c.permitted()),
            inheritable: mask(c.inheritable()),
            ambient: mask(c.ambient()),
        },
    }
}

/// Drops from the bounding set every capability not in `bounding`.
pub fn drop_bounding(bounding: u64) -> Result<()> {
    for n in 0..=last_cap() {
        if bounding & (1u64 << n) == 0 {
            if let Some(cap) = capability(n) {
                match rustix::thread::remove_capability_from_bounding_set(cap) {
                    Ok(()) => {}
                    // Already absent from this machine's bounding set.
                    Err(rustix::io::Errno::INVAL) => {}
                    Err(e) => {
                        return Err(RuntimeError::io(format!(
                            "dropping capability {} from the bounding set",
                            NAMES[n as usize].0
                        ))(e.into()))
                    }
                }
            }
        }
    }
    Ok(())
}

/// One capability, as the single-bit set rustix takes.
fn capability(n: u32) -> Option<CapabilitySet> {
    (n < 64).then(|| CapabilitySet::from_bits_retain(1u64 << n))
}

fn to_set(m: u64) -> CapabilitySet {
    CapabilitySet::from_bits_truncate(m)
}

/// Sets effective, permitted and inheritable, then raises the ambient ones.
pub fn apply(m: &Masks) -> Result<()> {
    rustix::thread::set_capabilities(
        None,
        CapabilitySets {
            effective: to_set(m.effective),
            permitted: to_set(m.permitted),
            inheritable: to_set(m.inheritable),
        },
    )
    .map_err(|e| RuntimeError::io("setting capabilities (capset)")(e.into()))?;
    let _ = rustix::thread::clear_ambient_capability_set();
    for n in 0..=last_cap() {
        if m.ambient & (1u64 << n) != 0 {
            if let Some(cap) = capability(n) {
                // An ambient capability must be permitted and inheritable; the kernel
                // refuses others, and runc ignores that refusal too.
                let _ = rustix::thread::configure_capability_in_ambient_set(cap, true);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_map_to_numbers() {
        assert_eq!(super::number("CAP_SYS_ADMIN"), Some(21));
        assert_eq!(super::number("net_raw"), Some(13));
        assert_eq!(super::number("CAP_NOPE"), None);
        for (i, (_, n)) in super::NAMES.iter().enumerate() {
            assert_eq!(i as u32, *n);
            assert!(super::capability(*n).is_some());
        }
    }
}
