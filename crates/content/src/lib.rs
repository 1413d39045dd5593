//! Content-addressed blob storage for fluke.
//!
//! [`Digest`] names content (`sha256:<hex>`); [`Store`] keeps blobs under
//! `blobs/<algorithm>/<hex>` in the OCI image-layout shape. A blob enters only through an
//! [`Ingest`] that hashes while writing, checks digest and size, fsyncs and renames, so the
//! store never holds a blob whose bytes do not hash to its name.

mod digest;
mod store;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use store::{FsckReport, Ingest, Store, StoreError};
