//! BPF program loading and cgroup attachment (the cgroup v2 device controller).
