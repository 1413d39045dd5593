//! Layer tarballs for fluke.
//!
//! Unpacks OCI/Docker layers into a directory through a resolver confined to that directory
//! (openat2 `RESOLVE_IN_ROOT`), applying whiteouts and opaque directories; packs directories
//! into deterministic tar layers; detects and handles gzip and zstd compression.
