//! The one error type of the crate: every variant names the cgroup (or cgroupsPath) and the
//! file or setting involved.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Result with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or opening a cgroup file (or directory) failed.
    #[error("cgroup {}: {file}: {source}", path.display())]
    Io {
        path: PathBuf,
        file: String,
        #[source]
        source: io::Error,
    },
    /// The kernel refused a value.
    #[error("cgroup {}: {file}: writing {value:?}: {source}", path.display())]
    Write {
        path: PathBuf,
        file: String,
        value: String,
        #[source]
        source: io::Error,
    },
    /// The spec asks for a setting whose file this kernel or hierarchy does not have.
    #[error("cgroup {}: {file}: not available: this kernel or cgroup hierarchy does not support {setting}", path.display())]
    NotSupported {
        path: PathBuf,
        file: String,
        setting: String,
    },
    /// A value in the spec is invalid or cannot be expressed on this cgroup version.
    #[error("cgroup {}: {file}: {reason}", path.display())]
    Invalid {
        path: PathBuf,
        file: String,
        reason: String,
    },
    /// A cgroup file did not hold what the kernel documents.
    #[error("cgroup {}: {file}: cannot parse {content:?}", path.display())]
    Parse {
        path: PathBuf,
        file: String,
        content: String,
    },
    /// The `linux.cgroupsPath` cannot be used.
    #[error("cgroupsPath {path:?}: {reason}")]
    Path { path: String, reason: String },
    /// No cgroup hierarchy is mounted (or the mount table could not be read).
    #[error("{}: {reason}", path.display())]
    NoCgroups { path: PathBuf, reason: String },
    /// A state change (freezing, removal) did not settle in time.
    #[error("cgroup {}: {file}: still {state} after {waited:?}", path.display())]
    Timeout {
        path: PathBuf,
        file: String,
        state: String,
        waited: Duration,
    },
    /// Loading or attaching the v2 device filter failed.
    #[error("cgroup {}: {file}: {source}", path.display())]
    Bpf {
        path: PathBuf,
        file: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Removing the cgroup directory failed.
    #[error("cgroup {}: rmdir: {source}", path.display())]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, file: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            file: file.into(),
            source,
        }
    }
}
