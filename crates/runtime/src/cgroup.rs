//! The little of cgroups the lifecycle needs until resource control lands: whether a
//! container's cgroup is frozen.

use std::path::Path;

/// True when the container's cgroup (relative path) is frozen, in v1 or v2.
pub fn is_frozen(path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    let rel = path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/freezer")
        .join(rel)
        .join("freezer.state");
    if let Ok(s) = std::fs::read_to_string(v1) {
        return s.trim() == "FROZEN";
    }
    for root in ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"] {
        if let Ok(s) = std::fs::read_to_string(Path::new(root).join(rel).join("cgroup.freeze")) {
            return s.trim() == "1";
        }
    }
    false
}
