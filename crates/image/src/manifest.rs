//! Manifests, indexes, descriptors and image configs (OCI and Docker schema 2).

use std::collections::BTreeMap;

use content::Digest;
use serde::{Deserialize, Serialize};

use crate::ImageError;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
/// The annotation naming an image in an OCI layout's index.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Points at a blob: what it is, its digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
        }
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An operating system and architecture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        default,
        rename = "os.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of the machine fluke runs on, in OCI's words.
    pub fn host() -> Platform {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "arm" => "arm",
            "powerpc64" => "ppc64le",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            other => other,
        };
        Platform {
            architecture: arch.to_string(),
            os: "linux".to_string(),
            variant: None,
            os_version: None,
        }
    }

    /// Does an index entry's platform satisfy this wanted one?
    pub fn matches(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// An image manifest (OCI or Docker schema 2: the same shape).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An OCI index or a Docker manifest list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// A parsed manifest of either kind.
#[derive(Debug, Clone)]
pub enum Manifest {
    Image(Box<ImageManifest>),
    Index(Index),
}

pub fn is_index_type(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_LIST
}

pub fn is_manifest_type(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

impl Manifest {
    /// Parses a manifest of the given media type; `what` names it in errors.
    pub fn parse(bytes: &[u8], media_type: &str, what: &str) -> Result<Manifest, ImageError> {
        let invalid = |e: serde_json::Error| ImageError::InvalidManifest {
            what: what.to_string(),
            message: e.to_string(),
        };
        if is_index_type(media_type) {
            let idx: Index = serde_json::from_slice(bytes).map_err(invalid)?;
            check_schema(what, idx.schema_version)?;
            Ok(Manifest::Index(idx))
        } else if is_manifest_type(media_type) {
            let m: ImageManifest = serde_json::from_slice(bytes).map_err(invalid)?;
            check_schema(what, m.schema_version)?;
            Ok(Manifest::Image(Box::new(m)))
        } else {
            Err(ImageError::UnsupportedMediaType {
                what: what.to_string(),
                media_type: media_type.to_string(),
            })
        }
    }

    /// Every blob (not manifest) the manifest references.
    pub fn blobs(&self) -> Vec<&Descriptor> {
        match self {
            Manifest::Image(m) => std::iter::once(&m.config).chain(&m.layers).collect(),
            Manifest::Index(_) => Vec::new(),
        }
    }
}

fn check_schema(what: &str, v: u32) -> Result<(), ImageError> {
    if v != 2 {
        return Err(ImageError::InvalidManifest {
            what: what.to_string(),
            message: format!("schemaVersion {v} is not supported (only 2 is)"),
        });
    }
    Ok(())
}

/// Picks the entry of an index for a platform.
pub fn select_platform<'a>(
    index: &'a Index,
    want: &Platform,
    what: &str,
) -> Result<&'a Descriptor, ImageError> {
    index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| want.matches(p)))
        .ok_or_else(|| {
            let have: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect();
            ImageError::NoMatchingPlatform {
                what: what.to_string(),
                wanted: want.to_string(),
                available: have.join(", "),
            }
        })
}

/// The parts of an image config fluke reads (the whole JSON is kept as served).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<serde_json::Value>,
    #[serde(
        default,
        rename = "docker_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub docker_version: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

impl ImageConfig {
    pub fn parse(bytes: &[u8], what: &str) -> Result<ImageConfig, ImageError> {
        serde_json::from_slice(bytes).map_err(|e| ImageError::InvalidManifest {
            what: what.to_string(),
            message: format!("invalid image config: {e}"),
        })
    }
}

/// The media type a layer gets in a manifest of `manifest_type`, for a compression.
pub fn layer_media_type(manifest_type: &str, compression: archive::Compression) -> &'static str {
    let docker = manifest_type == DOCKER_MANIFEST;
    match (docker, compression) {
        (true, archive::Compression::None) => DOCKER_LAYER,
        (true, _) => DOCKER_LAYER_GZIP,
        (false, archive::Compression::None) => OCI_LAYER,
        (false, archive::Compression::Gzip) => OCI_LAYER_GZIP,
        (false, archive::Compression::Zstd) => OCI_LAYER_ZSTD,
    }
}

/// Serialises JSON the way fluke writes manifests and configs: compact, stable order.
pub fn to_json(value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(value).expect("manifest types always serialise")
}
