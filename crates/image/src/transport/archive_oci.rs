//! `oci-archive:FILE[:REF]`: an OCI image layout in a tar file.

use std::io::Write;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use content::Digest;
use tempfile::TempDir;

use super::oci::{LayoutDestination, LayoutSource};
use super::tarfile::{extract_files, write_archive, Member};
use super::{ImageDestination, ImageSource};
use crate::manifest::Descriptor;
use crate::progress::Progress;
use crate::{ImageError, Result};

fn layout_member(name: &Path) -> bool {
    name == Path::new("oci-layout") || name == Path::new("index.json") || name.starts_with("blobs")
}

fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("fluke-archive-")
        .tempdir()
        .map_err(ImageError::io(std::env::temp_dir()))
}

/// An OCI archive, extracted to a temporary layout for reading.
pub struct OciArchiveSource {
    inner: LayoutSource,
    _tmp: TempDir,
}

pub fn open_source(file: &Path, reference: Option<&str>) -> Result<OciArchiveSource> {
    let tmp = temp_dir()?;
    extract_files(file, tmp.path(), &layout_member)?;
    let name = format!("oci-archive:{}", file.display());
    let inner = LayoutSource::open(tmp.path(), reference, name.clone()).map_err(|e| match e {
        ImageError::Invalid { message, .. } => ImageError::invalid(&name, message),
        ImageError::NotFound(_) => ImageError::NotFound(match reference {
            Some(r) => format!("{name}:{r}"),
            None => name.clone(),
        }),
        other => other,
    })?;
    Ok(OciArchiveSource { inner, _tmp: tmp })
}

#[async_trait]
impl ImageSource for OciArchiveSource {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn manifest(&self, instance: Option<&Descriptor>) -> Result<(Vec<u8>, String)> {
        self.inner.manifest(instance).await
    }

    async fn fetch_blob(&self, desc: &Descriptor, sink: &mut (dyn Write + Send)) -> Result<u64> {
        self.inner.fetch_blob(desc, sink).await
    }

    fn blob_path(&self, desc: &Descriptor) -> Option<PathBuf> {
        self.inner.blob_path(desc)
    }
}

/// Builds a layout in a temporary directory and writes the archive at commit.
pub struct OciArchiveDestination {
    inner: LayoutDestination,
    file: PathBuf,
    tmp: TempDir,
}

impl OciArchiveDestination {
    pub fn create(file: &Path, reference: Option<String>) -> Result<OciArchiveDestination> {
        let tmp = temp_dir()?;
        let layout_dir = tmp.path().join("layout");
        let inner = LayoutDestination::create(&layout_dir, reference)?;
        Ok(OciArchiveDestination {
            inner,
            file: file.to_path_buf(),
            tmp,
        })
    }
}

#[async_trait]
impl ImageDestination for OciArchiveDestination {
    fn describe(&self) -> String {
        format!("oci-archive:{}", self.file.display())
    }

    async fn has_blob(&self, desc: &Descriptor) -> Result<bool> {
        self.inner.has_blob(desc).await
    }

    async fn put_blob(
        &self,
        desc: &Descriptor,
        src: &dyn ImageSource,
        progress: &dyn Progress,
    ) -> Result<bool> {
        self.inner.put_blob(desc, src, progress).await
    }

    async fn put_instance(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()> {
        self.inner.put_instance(bytes, media_type, digest).await
    }

    // Nothing to abort: the archive file is written only at commit, through a rename.

    async fn commit(&self, bytes: &[u8], media_type: &str, digest: &Digest) -> Result<()> {
        self.inner.commit(bytes, media_type, digest).await?;
        let dir = self.tmp.path().join("layout");
        let mut members = vec![
            (
                "oci-layout".to_string(),
                Member::File(dir.join("oci-layout")),
            ),
            (
                "index.json".to_string(),
                Member::File(dir.join("index.json")),
            ),
        ];
        for d in self.inner.layout().store().list()? {
            members.push((
                format!("blobs/{}/{}", d.algorithm().as_str(), d.hex()),
                Member::File(self.inner.layout().store().blob_path(&d)),
            ));
        }
        tokio::task::block_in_place(|| write_archive(&self.file, members))
    }
}
