//! Client for the OCI distribution API (Docker Registry v2).
//!
//! One [`Client`] talks to one registry host: manifests by tag or digest, blobs with
//! resumable downloads, monolithic or chunked uploads, cross-repository mounts, tag lists.
//! It handles anonymous, Bearer-token (realm flow) and basic authentication, speaks plain
//! HTTP to loopback registries, and retries transient failures with backoff.

mod auth;
mod client;
mod error;

pub use auth::{Credentials, CredentialsError};
pub use client::{Client, FetchedManifest, Options, MANIFEST_ACCEPT};
pub use error::RegistryError;
