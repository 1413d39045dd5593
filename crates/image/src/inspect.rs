//! `inspect`: what an image is, without downloading its layers.

use std::collections::BTreeMap;

use content::Digest;
use serde::Serialize;

use crate::manifest::{select_platform, ImageConfig, Manifest, Platform};
use crate::transport::ImageSource;
use crate::{ImageError, Result};

/// The summary `fluke image inspect` prints (the same fields as `skopeo inspect`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Inspection {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub digest: Digest,
    pub repo_tags: Vec<String>,
    pub created: Option<String>,
    pub docker_version: String,
    pub labels: Option<BTreeMap<String, String>>,
    pub architecture: String,
    pub os: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    pub layers: Vec<Digest>,
    pub layers_data: Vec<LayerData>,
    pub env: Vec<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LayerData {
    #[serde(rename = "MIMEType")]
    pub mime_type: String,
    pub digest: Digest,
    pub size: u64,
    pub annotations: Option<BTreeMap<String, String>>,
}

/// The manifest of one image: the top-level one, or the platform's entry of an index.
/// Returns the top-level digest (what the reference names) and the image manifest.
pub async fn image_manifest(
    src: &dyn ImageSource,
    platform: Option<&Platform>,
) -> Result<(Digest, crate::manifest::ImageManifest)> {
    let what = src.describe();
    let (top, mt) = src.manifest(None).await?;
    let top_digest = Digest::sha256_of(&top);
    match Manifest::parse(&top, &mt, &what)? {
        Manifest::Image(m) => Ok((top_digest, *m)),
        Manifest::Index(idx) => {
            let want = platform.cloned().unwrap_or_else(Platform::host);
            let inst = select_platform(&idx, &want, &what)?;
            let (bytes, mt) = src.manifest(Some(inst)).await?;
            match Manifest::parse(&bytes, &mt, &format!("{what}: {}", inst.digest))? {
                Manifest::Image(m) => Ok((top_digest, *m)),
                Manifest::Index(_) => Err(ImageError::invalid(
                    &what,
                    "nested indexes are not supported",
                )),
            }
        }
    }
}

/// The config blob of an image, as stored.
pub async fn config_bytes(src: &dyn ImageSource, platform: Option<&Platform>) -> Result<Vec<u8>> {
    let (_, m) = image_manifest(src, platform).await?;
    let mut buf = Vec::with_capacity(m.config.size as usize);
    src.fetch_blob(&m.config, &mut buf).await?;
    let actual = Digest::sha256_of(&buf);
    if actual != m.config.digest {
        return Err(ImageError::invalid(
            format!("config {}", m.config.digest),
            format!("content hashes to {actual}"),
        ));
    }
    Ok(buf)
}

/// Builds the inspection of the image `src` names. `name` is the repository to show, and
/// `tags` asks the source for the repository's tags.
pub async fn inspect(
    src: &dyn ImageSource,
    name: Option<String>,
    platform: Option<&Platform>,
    tags: bool,
) -> Result<Inspection> {
    let (digest, m) = image_manifest(src, platform).await?;
    let config_raw = config_bytes(src, platform).await?;
    let config = ImageConfig::parse(&config_raw, &format!("config {}", m.config.digest))?;
    let repo_tags = if tags { src.tags().await? } else { Vec::new() };
    let cc = config.config.clone().unwrap_or_default();
    Ok(Inspection {
        name,
        digest,
        repo_tags,
        created: config.created.clone(),
        docker_version: config.docker_version.clone().unwrap_or_default(),
        labels: cc.labels.clone(),
        architecture: config.architecture.clone(),
        os: config.os.clone(),
        variant: config.variant.clone(),
        layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
        layers_data: m
            .layers
            .iter()
            .map(|l| LayerData {
                mime_type: l.media_type.clone(),
                digest: l.digest.clone(),
                size: l.size,
                annotations: l.annotations.clone(),
            })
            .collect(),
        env: cc.env.clone().unwrap_or_default(),
    })
}
