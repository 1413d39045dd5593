use std::io;
use std::path::PathBuf;

/// Errors of the runtime. Each names the container, the spec field or the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {message}")]
    Spec { path: PathBuf, message: String },
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("invalid container id {0:?}: use letters, digits, '.', '_' and '-' (at most 1024)")]
    InvalidId(String),
    #[error("container {id:?} is {status}: {action} needs it {needed}")]
    WrongState {
        id: String,
        status: String,
        action: String,
        needed: String,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    /// The container's init failed while setting up (the message comes from inside).
    #[error("{0}")]
    Init(String),
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Cgroup(#[from] cgroups::Error),
}

impl RuntimeError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(io::Error) -> RuntimeError {
        let what = what.into();
        move |source| RuntimeError::Io { what, source }
    }
}

impl From<rustix::io::Errno> for RuntimeError {
    fn from(e: rustix::io::Errno) -> Self {
        RuntimeError::Io {
            what: "system call".into(),
            source: e.into(),
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;
