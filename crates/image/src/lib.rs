//! OCI images for fluke: references, transports, the local store and one copy engine.
//!
//! A reference ([`ImageRef`]) names a transport and a location; [`transport::open_source`]
//! and [`transport::open_destination`] turn it into an image source or destination, and
//! [`copy::copy_image`] moves manifests, configs and layers between any two of them,
//! checking every digest and size before anything is committed. The local store
//! ([`store::ImageStore`]) is an OCI image layout with names.

#![forbid(unsafe_code)]

pub mod copy;
pub mod import;
pub mod inspect;
pub mod layout;
pub mod manifest;
pub mod progress;
pub mod reference;
pub mod store;
pub mod transport;
pub mod unpack;

pub use copy::{copy_image, CopyOptions, CopyReport};
pub use manifest::{Descriptor, ImageConfig, Manifest, Platform};
pub use progress::{NoProgress, Progress};
pub use reference::{DockerRef, ImageRef};
pub use store::ImageStore;

use std::path::PathBuf;

/// Everything that can go wrong with images. Messages name what and where.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("invalid reference {input:?}: {message}")]
    Reference { input: String, message: String },
    #[error("{what}: invalid manifest: {message}")]
    InvalidManifest { what: String, message: String },
    #[error("{what}: unsupported media type {media_type:?}")]
    UnsupportedMediaType { what: String, media_type: String },
    #[error("{what}: no image for platform {wanted} (available: {available})")]
    NoMatchingPlatform {
        what: String,
        wanted: String,
        available: String,
    },
    #[error("{0}: image not found")]
    NotFound(String),
    #[error("{what}: {message}")]
    Invalid { what: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
    #[error(transparent)]
    Store(#[from] content::StoreError),
    #[error(transparent)]
    Archive(#[from] archive::ArchiveError),
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ImageError {
        let path = path.into();
        move |source| ImageError::Io { path, source }
    }

    pub(crate) fn invalid(what: impl std::fmt::Display, message: impl Into<String>) -> ImageError {
        ImageError::Invalid {
            what: what.to_string(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = ImageError> = std::result::Result<T, E>;
