//! Layer tarballs for fluke.
//!
//! Unpacks OCI/Docker layers into a directory through a resolver confined to that directory
//! (openat2 `RESOLVE_IN_ROOT`), applying whiteouts and opaque directories; packs directories
//! into deterministic tar layers; detects and handles gzip and zstd compression.
//!
//! # Unpacking
//!
//! [`unpack_layer`] applies one layer on top of a directory; [`unpack_layers`] applies several
//! in order, decompressing on a second thread that feeds the writing thread through a bounded
//! channel of large buffers, so that inflating and file creation overlap.
//!
//! Whatever a tar entry says, nothing is created, changed or removed outside the destination:
//! the destination is opened once as a directory and every parent directory is resolved from
//! it with `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so `..`, absolute names and
//! symbolic links (even `evil -> /`) all resolve *inside* the destination, as if it were `/`.
//! Entries are then created with `*at` system calls on the resolved parent and never follow a
//! symbolic link in their last component: a file replacing a symbolic link replaces the link;
//! a file replacing a file unlinks it first (never writing through a hard link). Names are
//! cleaned lexically first (`a/../../x` → `x`, `/etc/x` → `etc/x`). Hard links may only point at
//! something inside the destination. Requires Linux ≥ 5.6 (openat2).
//!
//! OCI whiteouts: `.wh.NAME` removes `NAME` brought by earlier layers (recursively) and
//! `.wh..wh..opq` empties its directory of everything earlier layers put there; entries of the
//! same layer are kept whatever their order in the tar (the unpacker remembers which paths the
//! current layer created). Whiteout files never appear in the output; other `.wh..wh.*` (aufs
//! metadata) entries are skipped.
//!
//! Metadata: modes, ownership (when [`UnpackOptions::same_owner`]; setuid/setgid bits are only
//! kept then), modification times (directories' are set when their layer is complete), hard
//! links, sparse files (GNU old sparse and PAX 0.0/0.1/1.0 sparse), long names (GNU and PAX),
//! and extended attributes from PAX `SCHILY.xattr.*` records. Extended-attribute policy:
//! `user.*` is always applied; other namespaces only when running as root. A refusal by the
//! filesystem (`EOPNOTSUPP`, `EPERM`, `EACCES`) is counted in
//! [`UnpackStats::xattrs_skipped`] and not fatal, except for `security.capability` (a binary
//! silently losing its capabilities would be worse than a failed unpack) or when
//! [`UnpackOptions::strict_xattrs`] is set. Device nodes are created when permitted and
//! counted in [`UnpackStats::skipped`] when the kernel refuses them (`EPERM`, e.g. in a user
//! namespace).
//!
//! # Packing
//!
//! [`pack_dir`] writes a directory tree as a deterministic tar stream: see its documentation.

mod compression;
mod pack;
mod pipeline;
mod reader;
mod resolve;
mod unpack;

use std::io;
use std::path::PathBuf;

pub use compression::{compress, compress_level, decompress, Compression, Compressor};
pub use pack::{pack_dir, PackOptions, PackStats};
pub use unpack::{unpack_layer, unpack_layers, UnpackOptions, UnpackStats};

/// Errors of packing and unpacking. Unpacking errors name the layer (the caller's label) and
/// the tar entry concerned.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation needed to apply an entry failed.
    #[error("{layer}: entry {path:?}: {op}: {source}")]
    Entry {
        layer: String,
        path: String,
        op: String,
        #[source]
        source: io::Error,
    },
    /// The entry is malformed or asks for something refused (for example a hard link to a
    /// file that does not exist inside the destination).
    #[error("{layer}: entry {path:?}: {reason}")]
    Invalid {
        layer: String,
        path: String,
        reason: String,
    },
    /// The layer could not be read, decompressed or parsed as tar.
    #[error("{layer}: reading the layer {at}: {source}")]
    Read {
        layer: String,
        /// Where in the layer: `at its start`, `after entry "x"` or `inside entry "x"`.
        at: String,
        #[source]
        source: io::Error,
    },
    /// The destination directory could not be opened.
    #[error("{}: opening the destination directory: {source}", .path.display())]
    Destination {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Packing: a source file could not be read.
    #[error("packing {}: {op}: {source}", .path.display())]
    Source {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Packing: a source file cannot be represented.
    #[error("packing {}: {reason}", .path.display())]
    Unsupported { path: PathBuf, reason: String },
    /// Packing: writing the tar stream failed.
    #[error("packing: writing the archive: {0}")]
    Write(#[source] io::Error),
}
