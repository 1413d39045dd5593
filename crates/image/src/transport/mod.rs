//! Image sources and destinations, one pair per transport, behind two traits that the
//! copy engine drives.

mod archive_docker;
mod archive_oci;
mod dir;
mod docker;
mod oci;
mod tarfile;

pub use oci::{LayoutDestination, LayoutSource};

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use content::Digest;

use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::reference::ImageRef;
use crate::store::ImageStore;
use crate::Result;

pub use docker::RegistryOptions;

/// Where an image can be read from.
#[async_trait]
pub trait ImageSource: Send + Sync {
    /// Names the source in messages.
    fn describe(&self) -> String;

    /// The manifest the reference names (`None`), or one of its instances by digest.
    /// Returns the bytes as stored and their media type.
    async fn manifest(&self, instance: Option<&Descriptor>) -> Result<(Vec<u8>, String)>;

    /// Writes the blob's bytes into `sink`. Sources do not check the digest: every caller
    /// hashes what it receives (content-store ingests, verified files, registries on upload,
    /// config reads), so that each byte is hashed once.
    async fn fetch_blob(&self, desc: &Descriptor, sink: &mut (dyn Write + Send)) -> Result<u64>;

    /// A file holding the blob, for sources that keep blobs as files.
    fn blob_path(&self, _desc: &Descriptor) -> Option<PathBuf> {
        None
    }

    /// `(registry host, repository)` for registry sources (cross-repository mounts).
    fn registry_repo(&self) -> Option<(String, String)> {
        None
    }

    /// The tags the repository has (registry sources only).
    async fn tags(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
}

/// Where an image can be written to.
#[async_trait]
pub trait ImageDestination: Send + Sync {
    fn describe(&self) -> String;

    /// True when the destination already holds the blob.
    async fn has_blob(&self, desc: &Descriptor) -> Result<bool>;

    /// Copies a blob from `src`, verifying digest and size before committing it.
    /// Returns true when a registry mounted it instead.
    async fn put_blob(
        &self,
        desc: &Descriptor,
        src: &dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<bool>;

    /// Stores a manifest that an index refers to (not the top-level one).
    async fn put_instance(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()>;

    /// Stores the top-level manifest and makes the image visible (tag, index entry,
    /// archive file). Nothing is visible before this.
    async fn commit(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()>;

    /// Called when a copy fails: remove whatever the destination created, so that nothing
    /// half-written is left (blobs already in a shared store stay; they are whole).
    async fn abort(&self) {}

    /// Whether the destination can hold an index (or only one image).
    fn accepts_index(&self) -> bool {
        true
    }
}

/// Connection settings for opening transports.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    pub registry: RegistryOptions,
    /// The local store, for `store:` references.
    pub store_root: Option<PathBuf>,
}

/// Opens a reference for reading.
pub async fn open_source(r: &ImageRef, opts: &OpenOptions) -> Result<Arc<dyn ImageSource>> {
    Ok(match r {
        ImageRef::Docker(d) => Arc::new(docker::RegistrySource::new(d, &opts.registry)?),
        ImageRef::Oci { dir, reference } => Arc::new(oci::LayoutSource::open(
            dir,
            reference.as_deref(),
            format!("oci:{}", dir.display()),
        )?),
        ImageRef::Store(name) => {
            let store = ImageStore::open(store_root(opts)?)?;
            Arc::new(store.source(name)?)
        }
        ImageRef::OciArchive { file, reference } => {
            Arc::new(archive_oci::open_source(file, reference.as_deref())?)
        }
        ImageRef::DockerArchive { file, reference } => Arc::new(
            archive_docker::DockerArchiveSource::open(file, reference.as_ref())?,
        ),
        ImageRef::Dir(dir) => Arc::new(dir::DirSource::open(dir)?),
    })
}

/// Opens a reference for writing.
pub async fn open_destination(
    r: &ImageRef,
    opts: &OpenOptions,
) -> Result<Arc<dyn ImageDestination>> {
    Ok(match r {
        ImageRef::Docker(d) => Arc::new(docker::RegistryDestination::new(d, &opts.registry)?),
        ImageRef::Oci { dir, reference } => {
            Arc::new(oci::LayoutDestination::create(dir, reference.clone())?)
        }
        ImageRef::Store(name) => {
            let store = ImageStore::open(store_root(opts)?)?;
            Arc::new(store.destination(name)?)
        }
        ImageRef::OciArchive { file, reference } => Arc::new(
            archive_oci::OciArchiveDestination::create(file, reference.clone())?,
        ),
        ImageRef::DockerArchive { file, reference } => Arc::new(
            archive_docker::DockerArchiveDestination::create(file, reference.as_ref())?,
        ),
        ImageRef::Dir(dir) => Arc::new(dir::DirDestination::create(dir)?),
    })
}

fn store_root(opts: &OpenOptions) -> Result<PathBuf> {
    opts.store_root
        .clone()
        .ok_or_else(|| crate::ImageError::invalid("store", "no store root configured"))
}

/// A writer that reports the bytes passing through it.
pub(crate) struct Counting<'a> {
    pub inner: &'a mut (dyn Write + Send),
    pub progress: &'a dyn Progress,
    pub digest: &'a Digest,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.progress.blob_bytes(self.digest, n as u64);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Copies a blob from `src` into a content store, verified, and commits it.
pub(crate) async fn ingest_blob(
    store: &content::Store,
    desc: &Descriptor,
    src: &dyn ImageSource,
    progress: &dyn Progress,
) -> Result<()> {
    let mut ingest = store.ingest(Some(&desc.digest), Some(desc.size))?;
    {
        let mut w = Counting {
            inner: &mut ingest,
            progress,
            digest: &desc.digest,
        };
        src.fetch_blob(desc, &mut w).await?;
    }
    tokio::task::block_in_place(|| ingest.commit())?;
    Ok(())
}

/// The media type a manifest declares in its `mediaType` field, or the one its shape says.
pub(crate) fn sniff_manifest_type(bytes: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Probe>(bytes) {
        Ok(Probe {
            media_type: Some(m),
            ..
        }) => m,
        Ok(Probe {
            manifests: Some(_), ..
        }) => crate::manifest::OCI_INDEX.to_string(),
        _ => crate::manifest::OCI_MANIFEST.to_string(),
    }
}

/// Copies a file into `sink` with blocking I/O in large reads (the sink hashes every
/// write, so fewer, larger writes are cheaper).
pub(crate) fn copy_file_into(path: &std::path::Path, sink: &mut (dyn Write + Send)) -> Result<u64> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(crate::ImageError::io(path))?;
    tokio::task::block_in_place(|| {
        let mut buf = vec![0u8; 1 << 20];
        let mut total = 0u64;
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => return Ok(total),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            sink.write_all(&buf[..n])?;
            total += n as u64;
        }
    })
    .map_err(crate::ImageError::io(path))
}
