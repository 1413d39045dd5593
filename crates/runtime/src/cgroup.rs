//! The container's cgroup, through the cgroups crate: created before the container's
//! first process runs, limits applied, rebuilt from the state in later commands.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};

use crate::error::Result;

/// The manager for a container: the spec's cgroupsPath, or `/fluke/<id>`.
pub fn manager(spec: &Spec, id: &str) -> Result<cgroups::Manager> {
    let path = spec.linux().as_ref().and_then(|l| l.cgroups_path().clone());
    Ok(cgroups::Manager::for_container(
        cgroups::Hierarchies::detect()?,
        path.as_deref(),
        id,
    )?)
}

/// The manager of an existing container, from what its state recorded.
pub fn from_state(path: &str, depth: usize) -> Option<cgroups::Manager> {
    if path.is_empty() {
        return None;
    }
    let mut m = cgroups::Manager::detect(Path::new(path)).ok()?;
    m.set_created_depth(depth);
    Some(m)
}

fn rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The spec's resources with the device rules every container needs appended, as runc
/// does: the default devices (null, zero, full, random, urandom, tty, console, ptmx,
/// pseudo-terminals), mknod of anything, and the spec's own device nodes.
pub fn resources_with_defaults(spec: &Spec) -> LinuxResources {
    let linux = spec.linux().as_ref();
    let mut res = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let mut devices = res.devices().clone().unwrap_or_default();
    use LinuxDeviceType::{B, C};
    devices.push(rule(C, None, None, "m"));
    devices.push(rule(B, None, None, "m"));
    for (major, minor) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ] {
        devices.push(rule(C, Some(major), Some(minor), "rwm"));
    }
    devices.push(rule(C, Some(136), None, "rwm"));
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let t = match d.typ() {
            LinuxDeviceType::B => B,
            _ => C,
        };
        devices.push(rule(t, Some(d.major()), Some(d.minor()), "rwm"));
    }
    res.set_devices(Some(devices));
    res
}
