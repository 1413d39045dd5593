//! `docker://HOST/NAME[:TAG|@DIGEST]`: a repository in a registry.

use std::io::Write;

use async_trait::async_trait;
use content::Digest;
use registry::{Client, Credentials};

use super::{ImageDestination, ImageSource};
use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::reference::DockerRef;
use crate::{ImageError, Result};

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryOptions {
    /// `Some(false)` disables TLS verification (and allows plain HTTP); loopback
    /// registries always use plain HTTP.
    pub tls_verify: Option<bool>,
    pub credentials: Option<Credentials>,
    /// Upload blobs in PATCH chunks of this many bytes instead of one PUT.
    pub chunk_size: Option<u64>,
}

fn client(r: &DockerRef, opts: &RegistryOptions) -> Result<Client> {
    Ok(Client::new(
        &r.registry,
        registry::Options {
            tls_verify: opts.tls_verify.unwrap_or(true),
            credentials: opts.credentials.clone(),
            ..Default::default()
        },
    )?)
}

pub struct RegistrySource {
    client: Client,
    reference: DockerRef,
}

impl RegistrySource {
    pub fn new(r: &DockerRef, opts: &RegistryOptions) -> Result<RegistrySource> {
        Ok(RegistrySource {
            client: client(r, opts)?,
            reference: r.clone(),
        })
    }
}

#[async_trait]
impl ImageSource for RegistrySource {
    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    async fn manifest(&self, instance: Option<&Descriptor>) -> Result<(Vec<u8>, String)> {
        let reference = match instance {
            Some(d) => d.digest.to_string(),
            None => self.reference.reference(),
        };
        let m = self
            .client
            .get_manifest(&self.reference.repository, &reference)
            .await?;
        Ok((m.bytes, m.media_type))
    }

    async fn fetch_blob(&self, desc: &Descriptor, sink: &mut (dyn Write + Send)) -> Result<u64> {
        Ok(self
            .client
            .fetch_blob(
                &self.reference.repository,
                &desc.digest,
                Some(desc.size),
                sink,
            )
            .await?)
    }

    fn registry_repo(&self) -> Option<(String, String)> {
        Some((
            self.reference.registry.clone(),
            self.reference.repository.clone(),
        ))
    }

    async fn tags(&self) -> Result<Vec<String>> {
        Ok(self.client.list_tags(&self.reference.repository).await?)
    }
}

pub struct RegistryDestination {
    client: Client,
    reference: DockerRef,
    chunk_size: Option<u64>,
}

impl RegistryDestination {
    pub fn new(r: &DockerRef, opts: &RegistryOptions) -> Result<RegistryDestination> {
        Ok(RegistryDestination {
            client: client(r, opts)?,
            reference: r.clone(),
            chunk_size: opts.chunk_size,
        })
    }
}

#[async_trait]
impl ImageDestination for RegistryDestination {
    fn describe(&self) -> String {
        format!("docker://{}", self.reference)
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        Ok(self
            .client
            .blob_exists(&self.reference.repository, &desc.digest)
            .await?
            .is_some())
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        src: &dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<bool> {
        let repo = &self.reference.repository;
        if let Some((host, from)) = src.registry_repo() {
            if host == self.reference.registry
                && &from != repo
                && self.client.mount_blob(repo, &desc.digest, &from).await?
            {
                return Ok(true);
            }
        }
        // Uploads stream from a file so that a failed attempt can start again.
        let spooled;
        let path = match src.blob_path(desc) {
            Some(p) => p,
            None => {
                let mut tmp =
                    tempfile::NamedTempFile::new().map_err(ImageError::io(std::env::temp_dir()))?;
                src.fetch_blob(desc, tmp.as_file_mut()).await?;
                spooled = tmp;
                spooled.path().to_path_buf()
            }
        };
        self.client
            .upload_blob(repo, &desc.digest, desc.size, &path, self.chunk_size)
            .await?;
        progress.blob_bytes(&desc.digest, desc.size);
        Ok(false)
    }

    async fn put_instance(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()> {
        self.client
            .put_manifest(
                &self.reference.repository,
                &digest.to_string(),
                bytes,
                media_type,
            )
            .await?;
        Ok(())
    }

    async fn commit(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()> {
        if let Some(want) = &self.reference.digest {
            if want != digest {
                return Err(ImageError::invalid(
                    self.describe(),
                    format!("the image's digest is {digest}, not the one named"),
                ));
            }
        }
        let reference = match (&self.reference.tag, &self.reference.digest) {
            (Some(t), _) => t.clone(),
            (None, _) => digest.to_string(),
        };
        self.client
            .put_manifest(&self.reference.repository, &reference, bytes, media_type)
            .await?;
        Ok(())
    }
}
