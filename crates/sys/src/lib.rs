//! The Linux system calls fluke needs that no safe wrapper offers: fork and unshare for the
//! runtime, loading seccomp filters
//! (with a user-notification listener), loading and attaching BPF programs for the cgroup
//! v2 device controller. Every `unsafe` block in fluke lives here and says why it is sound.

pub mod bpf;
pub mod process;
pub mod seccomp;
