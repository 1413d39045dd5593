/// Errors from talking to a registry. Each names the registry and what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{registry}: {what}: {source}")]
    Transport {
        registry: String,
        what: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{registry}: {what}: HTTP {status}{}", fmt_detail(.detail))]
    Status {
        registry: String,
        what: String,
        status: u16,
        detail: String,
    },
    #[error("{registry}: {what}: authentication required ({detail})")]
    Unauthorized {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("{registry}: {what}: not found{}", fmt_detail(.detail))]
    NotFound {
        registry: String,
        what: String,
        detail: String,
    },
    #[error("{registry}: {what}: {message}")]
    Protocol {
        registry: String,
        what: String,
        message: String,
    },
    #[error("{registry}: {what}: writing the blob: {source}")]
    Sink {
        registry: String,
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Credentials(#[from] crate::auth::CredentialsError),
}

fn fmt_detail(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

impl RegistryError {
    /// True for failures worth trying again (connection trouble, 5xx, 429).
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { source, .. } => {
                source.is_connect()
                    || source.is_timeout()
                    || source.is_request()
                    || source.is_body()
                    || source.is_decode()
            }
            RegistryError::Status { status, .. } => {
                *status == 429 || (*status >= 500 && *status != 501)
            }
            _ => false,
        }
    }
}
