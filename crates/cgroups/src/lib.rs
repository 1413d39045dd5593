//! Linux control groups for fluke's OCI runtime on cgroup v1, hybrid and v2 hosts: find the
//! hierarchies, create a container's cgroup, turn `linux.resources` into cgroup files (and a v2
//! device-filter eBPF program), add processes, freeze, read stats, clean up ([`Manager`]).
#![forbid(unsafe_code)]

pub mod devices;
mod error;
mod fs;
pub mod hierarchy;
mod manager;
pub mod path;
pub mod resources;
pub mod stats;

pub use error::{Error, Result};
pub use hierarchy::{Controller, Hierarchies, Mode};
pub use manager::{FreezerState, Manager};
pub use resources::Ignored;
pub use rustix::process::Signal;
pub use stats::Stats;
