//! Device access rules: the OCI `linux.resources.devices` list, as cgroup v1
//! `devices.allow`/`devices.deny` writes or as a cgroup v2 eBPF program ([`ebpf`]).
//!
//! Semantics (both versions): the list starts from "deny everything"; a rule of type `a`
//! resets the state to allow-all or deny-all (as writing `a` does on v1); every other rule
//! sets its access bits for the devices it names, the last rule naming a device and an access
//! bit wins. v1 cannot take a deny out of a wider allow (nor the reverse) — the kernel would
//! silently keep the wider rule — so such lists are refused on v1 instead of half-applied.

pub mod ebpf;

use std::collections::BTreeMap;
use std::fmt;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// Which devices a rule names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum DeviceKind {
    /// Every device (`a`): the rule resets the whole state.
    All,
    /// Block devices (`b`).
    Block,
    /// Character devices (`c`, or `u`).
    Char,
}

/// Access bits, with the kernel's `BPF_DEVCG_ACC_*` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Access(pub u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const ALL: Access = Access(7);

    /// Parses `rwm` letters; empty or absent means all three.
    pub fn parse(s: Option<&str>) -> Result<Access, String> {
        let s = s.unwrap_or("");
        if s.is_empty() {
            return Ok(Access::ALL);
        }
        let mut a = 0;
        for c in s.chars() {
            a |= match c {
                'r' => Access::READ.0,
                'w' => Access::WRITE.0,
                'm' => Access::MKNOD.0,
                _ => return Err(format!("access {s:?}: only r, w and m are allowed")),
            };
        }
        Ok(Access(a))
    }

    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Access::READ, 'r'),
            (Access::WRITE, 'w'),
            (Access::MKNOD, 'm'),
        ] {
            if self.contains(bit) {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// One normalised device rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRule {
    pub allow: bool,
    pub kind: DeviceKind,
    /// `None` for any major.
    pub major: Option<u32>,
    /// `None` for any minor.
    pub minor: Option<u32>,
    pub access: Access,
}

fn number(what: &str, v: Option<i64>) -> Result<Option<u32>, String> {
    match v {
        None | Some(-1) => Ok(None),
        // dev_t numbers: 12-bit major, 20-bit minor; bound them so they fit an eBPF immediate.
        Some(n) if (0..=i64::from(i32::MAX)).contains(&n) => Ok(Some(n as u32)),
        Some(n) => Err(format!("{what} {n} is not a device number (or -1 for any)")),
    }
}

impl DeviceRule {
    /// From the OCI form: type absent means `a`, major/minor absent or -1 mean any, access
    /// absent means `rwm`. FIFOs (`p`) have no device number and are refused.
    pub fn from_oci(r: &LinuxDeviceCgroup) -> Result<DeviceRule, String> {
        let kind = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => DeviceKind::All,
            LinuxDeviceType::B => DeviceKind::Block,
            LinuxDeviceType::C | LinuxDeviceType::U => DeviceKind::Char,
            LinuxDeviceType::P => {
                return Err("type p (fifo) cannot be controlled by the device cgroup".into())
            }
        };
        Ok(DeviceRule {
            allow: r.allow(),
            kind,
            major: number("major", r.major())?,
            minor: number("minor", r.minor())?,
            access: Access::parse(r.access().as_deref())?,
        })
    }

    /// The rule as a line for `devices.allow`/`devices.deny` (`a` alone for type all).
    pub fn v1_line(&self) -> String {
        let n = |v: Option<u32>| v.map_or("*".to_string(), |v| v.to_string());
        match self.kind {
            DeviceKind::All => "a".into(),
            DeviceKind::Block | DeviceKind::Char => format!(
                "{} {}:{} {}",
                if self.kind == DeviceKind::Block {
                    'b'
                } else {
                    'c'
                },
                n(self.major),
                n(self.minor),
                self.access
            ),
        }
    }
}

/// Converts the OCI list, naming the offending rule on error.
pub fn from_oci(rules: &[LinuxDeviceCgroup]) -> Result<Vec<DeviceRule>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, r)| DeviceRule::from_oci(r).map_err(|e| format!("devices[{i}]: {e}")))
        .collect()
}

/// The v1 writes for a rule list: `(file, line)` pairs, starting with `a` to `devices.deny`
/// (unless the list starts with its own `a` rule).
/// Lists that v1 cannot express (a rule that would punch a hole in a wider rule of the
/// opposite kind) are refused, as runc does, rather than applied with a silent difference.
pub fn v1_writes(rules: &[DeviceRule]) -> Result<Vec<(&'static str, String)>, String> {
    type Key = (DeviceKind, Option<u32>, Option<u32>);
    let mut default_allow = false;
    let mut exceptions: BTreeMap<Key, Access> = BTreeMap::new();
    // Start from deny-all, unless the list itself starts with a reset.
    let mut out = Vec::new();
    if rules.first().is_none_or(|r| r.kind != DeviceKind::All) {
        out.push(("devices.deny", "a".to_string()));
    }
    for (i, r) in rules.iter().enumerate() {
        if r.kind == DeviceKind::All {
            default_allow = r.allow;
            exceptions.clear();
        } else if r.allow != default_allow {
            let e = exceptions.entry((r.kind, r.major, r.minor)).or_default();
            e.0 |= r.access.0;
        } else {
            // Removing (part of) an exception: only an exact match can be removed on v1.
            let key = (r.kind, r.major, r.minor);
            for wider in [
                (r.kind, None, r.minor),
                (r.kind, r.major, None),
                (r.kind, None, None),
            ] {
                if wider == key {
                    continue;
                }
                if let Some(a) = exceptions.get(&wider) {
                    if a.0 & r.access.0 != 0 {
                        let w = DeviceRule {
                            allow: !r.allow,
                            kind: wider.0,
                            major: wider.1,
                            minor: wider.2,
                            access: *a,
                        };
                        return Err(format!(
                            "devices[{i}] ({} {}) cannot be expressed on cgroup v1: it would punch a \
                             hole in the earlier wider rule ({} {})",
                            if r.allow { "allow" } else { "deny" },
                            r.v1_line(),
                            if w.allow { "allow" } else { "deny" },
                            w.v1_line()
                        ));
                    }
                }
            }
            if let Some(a) = exceptions.get_mut(&key) {
                a.0 &= !r.access.0;
                if a.is_empty() {
                    exceptions.remove(&key);
                }
            }
        }
        let file = if r.allow {
            "devices.allow"
        } else {
            "devices.deny"
        };
        out.push((file, r.v1_line()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxDeviceCgroupBuilder;

    pub(crate) fn rule(
        allow: bool,
        kind: DeviceKind,
        major: Option<u32>,
        minor: Option<u32>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            kind,
            major,
            minor,
            access: Access::parse(Some(access)).unwrap(),
        }
    }

    #[test]
    fn oci_conversion() {
        let r = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::C)
            .major(1)
            .minor(3)
            .access("rw")
            .build()
            .unwrap();
        let d = DeviceRule::from_oci(&r).unwrap();
        assert_eq!(d, rule(true, DeviceKind::Char, Some(1), Some(3), "rw"));
        assert_eq!(d.v1_line(), "c 1:3 rw");
        let any = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .build()
            .unwrap();
        let d = DeviceRule::from_oci(&any).unwrap();
        assert_eq!(d, rule(false, DeviceKind::All, None, None, "rwm"));
        assert_eq!(d.v1_line(), "a");
        let wild = LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .typ(LinuxDeviceType::B)
            .major(-1)
            .access("m")
            .build()
            .unwrap();
        assert_eq!(DeviceRule::from_oci(&wild).unwrap().v1_line(), "b *:* m");
        let fifo = LinuxDeviceCgroupBuilder::default()
            .typ(LinuxDeviceType::P)
            .build()
            .unwrap();
        assert!(DeviceRule::from_oci(&fifo).is_err());
        let bad = LinuxDeviceCgroupBuilder::default()
            .access("rx")
            .build()
            .unwrap();
        assert!(from_oci(&[bad]).unwrap_err().starts_with("devices[0]"));
        let neg = LinuxDeviceCgroupBuilder::default()
            .typ(LinuxDeviceType::C)
            .major(-7)
            .build()
            .unwrap();
        assert!(DeviceRule::from_oci(&neg).is_err());
    }

    #[test]
    fn v1_lines_in_order() {
        let rules = [
            rule(false, DeviceKind::All, None, None, "rwm"),
            rule(true, DeviceKind::Char, None, None, "m"),
            rule(true, DeviceKind::Char, Some(1), Some(3), "rwm"),
            rule(false, DeviceKind::Char, Some(1), Some(3), "w"),
        ];
        assert_eq!(
            v1_writes(&rules).unwrap(),
            [
                ("devices.deny", "a".to_string()),
                ("devices.allow", "c *:* m".to_string()),
                ("devices.allow", "c 1:3 rwm".to_string()),
                ("devices.deny", "c 1:3 w".to_string()),
            ]
        );
    }

    #[test]
    fn v1_refuses_hole_punching() {
        let rules = [
            rule(true, DeviceKind::Char, Some(1), None, "rw"),
            rule(false, DeviceKind::Char, Some(1), Some(3), "w"),
        ];
        let e = v1_writes(&rules).unwrap_err();
        assert!(e.contains("devices[1]") && e.contains("c 1:* rw"), "{e}");
        // Disjoint access is fine: nothing to punch.
        let ok = [
            rule(true, DeviceKind::Char, Some(1), None, "r"),
            rule(false, DeviceKind::Char, Some(1), Some(3), "w"),
        ];
        assert!(v1_writes(&ok).is_ok());
        // And so is a deny after an allow-all (a deny exception in allow mode).
        let ok = [
            rule(true, DeviceKind::All, None, None, ""),
            rule(false, DeviceKind::Char, Some(1), Some(3), "w"),
        ];
        assert!(v1_writes(&ok).is_ok());
    }
}
