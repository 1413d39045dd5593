//! fluke's OCI runtime: containers from OCI bundles (namespaces, a confined rootfs with
//! pivot_root, devices, masked and read-only paths, capabilities, rlimits, hooks), behind
//! a small lifecycle API ([`Runtime`]) used by the runc-compatible command and, in
//! process, by the guest init. Synchronous: no async runtime, and `create` forks, so the
//! calling process must be single-threaded.

mod caps;
mod cgroup;
mod channel;
mod container;
mod error;
mod hooks;
mod init;
mod rootfs;
pub mod spec;
pub mod state;

/// Resource statistics of a container (`events --stats`).
pub use cgroups::stats;
pub use container::{CreateOptions, Runtime};
pub use error::{Result, RuntimeError};
pub use state::{State, Status};
