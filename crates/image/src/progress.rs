//! Progress events from long operations; the command line turns them into bars or lines.

use content::Digest;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Copied,
    /// The destination already had it.
    Skipped,
    /// The registry mounted it from another repository.
    Mounted,
}

/// Receives progress from copies, unpacks and imports. All methods have empty defaults.
pub trait Progress: Send + Sync {
    /// A blob transfer starts (`kind` is "config", "layer" or "manifest").
    fn blob_start(&self, _digest: &Digest, _size: u64, _kind: &str) {}
    /// `n` more bytes of the blob moved.
    fn blob_bytes(&self, _digest: &Digest, _n: u64) {}
    fn blob_done(&self, _digest: &Digest, _outcome: BlobOutcome) {}
    /// A one-line note ("Writing manifest", "Unpacking layer 2/6").
    fn note(&self, _message: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}
